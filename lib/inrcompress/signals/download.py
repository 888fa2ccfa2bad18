"""Downloading dataset files: resumable, verified, atomic, with a progress bar.

    download(url, target, sha256=..., size=...)

* The bytes go to `<target>.part`; an interrupted download (Ctrl-C, a dropped connection, a killed
  job) leaves that file, and the next call asks the server for the rest (HTTP Range) and appends.
  A server that ignores Range (200 instead of 206) makes the download start over.
* When it is complete, the size and the SHA256 are checked (when given), then `.part` is renamed
  to `target` in one step: `target` exists only when it is whole and verified.
* A `target` that already exists and verifies is not downloaded again.
* Messages: progress bar and warnings on stderr, what was done on stdout (not with quiet=True).
* Problems (no network, connection refused, HTTP errors, wrong size or checksum) raise
  DownloadError, an InrError: the tools print one line `error: ...` and exit with code 2.

Only the standard library (urllib) is used, plus tqdm for the progress bar when it is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from inrcompress.errors import InrError

CHUNK = 1 << 16
USER_AGENT = "inrcompress-download/1"
PART_SUFFIX = ".part"


class DownloadError(InrError):
    """A download that failed or did not verify; the message is one line."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: str | os.PathLike, *, sha256: str | None = None, size: int | None = None) -> None:
    """Raise DownloadError unless `path` has the given size and SHA256 (None: not checked)."""
    path = Path(path)
    if not path.is_file():
        raise DownloadError(f"{path} does not exist")
    actual_size = path.stat().st_size
    if size is not None and actual_size != int(size):
        raise DownloadError(f"{path.name}: {actual_size} bytes, expected {int(size)}")
    if sha256 is not None:
        actual = sha256_file(path)
        if actual.lower() != sha256.lower():
            raise DownloadError(f"{path.name}: SHA256 {actual[:16]}... does not match the expected "
                                f"{sha256.lower()[:16]}...")


def is_verified(path: str | os.PathLike, *, sha256: str | None = None, size: int | None = None) -> bool:
    try:
        verify_file(path, sha256=sha256, size=size)
    except DownloadError:
        return False
    return True


def read_sha256sums(path: str | os.PathLike) -> dict[str, str]:
    """A `sha256sum` listing ('<hex>  <name>' per line, '*' binary marker allowed) as {name: hex}."""
    sums = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise InrError(f"cannot read checksum file {path}: {e.strerror or e}") from None
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise InrError(f"{path}:{number}: not a '<sha256>  <file>' line")
        sums[parts[1].lstrip("*").strip()] = parts[0].lower()
    return sums


def _reason(error: BaseException) -> str:
    """A short, one-line description of a network error."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        inner = error.reason
        return _reason(inner) if isinstance(inner, BaseException) else " ".join(str(inner).split())
    if isinstance(error, socket.gaierror):
        return f"host name not resolved ({error.strerror or error})"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(error, http.client.IncompleteRead):
        return "the connection closed before the end of the file"
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return " ".join(str(text).split())


def _progress_bar(total: int | None, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a dependency of the package, but the helper works without it
        return None
    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                file=sys.stderr, leave=False, dynamic_ncols=True)


def _content_range_start(value: str | None) -> int | None:
    """The first byte of a 'Content-Range: bytes a-b/n' header."""
    if not value or not value.strip().lower().startswith("bytes "):
        return None
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _fetch_once(url: str, part: Path, timeout: float, progress: bool, desc: str,
                opener: Callable = urllib.request.urlopen) -> None:
    """One HTTP request: append the missing bytes of `url` to `part` (or rewrite it)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = opener(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            # Nothing left to send: the partial file is (at least) the whole file. Verified later.
            return
        raise
    with response:
        status = getattr(response, "status", 200)
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if have and status == 206 and _content_range_start(response.headers.get("Content-Range")) == have:
            mode, offset = "ab", have
        else:
            mode, offset = "wb", 0  # the server sends the whole file
        total = offset + length if length is not None else None
        bar = _progress_bar(total, offset, desc, progress)
        written = 0
        try:
            with open(part, mode) as f:
                while True:
                    block = response.read(CHUNK)
                    if not block:
                        break
                    f.write(block)
                    written += len(block)
                    if bar is not None:
                        bar.update(len(block))
        finally:
            if bar is not None:
                bar.close()
        if length is not None and written < length:
            raise http.client.IncompleteRead(b"", length - written)


def download(url: str, target: str | os.PathLike, *, sha256: str | None = None, size: int | None = None,
             progress: bool = True, timeout: float = 60.0, retries: int = 3, quiet: bool = False,
             opener: Callable = urllib.request.urlopen) -> Path:
    """Download `url` to `target` (see the module docstring); returns the target path.

    retries: how often a transfer that broke off is resumed within this call. A connection that
    cannot be opened at all (offline, refused, unknown host) fails at once."""
    target = Path(target)
    if is_verified(target, sha256=sha256, size=size):
        if not quiet:
            print(f"{target}: present and verified, not downloaded again")
        return target
    if target.exists():
        raise DownloadError(f"{target} exists but does not match the expected size/checksum; "
                            "delete it to download it again")
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + PART_SUFFIX)
    if size is not None and part.exists() and part.stat().st_size > int(size):
        part.unlink()  # longer than the whole file: not a prefix of it
    attempt = 0
    while True:
        started_with = part.stat().st_size if part.exists() else 0
        try:
            _fetch_once(url, part, timeout, progress, target.name, opener)
            break
        except urllib.error.HTTPError as e:
            raise DownloadError(f"cannot download {url}: {_reason(e)}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            now = part.stat().st_size if part.exists() else 0
            attempt += 1
            if now <= started_with or attempt > retries:
                hint = ("; the partial file is kept and the next run resumes it" if now else "")
                offline = ("" if now else " (no network connection, or the server is down?)")
                raise DownloadError(f"cannot download {url}: {_reason(e)}{offline}{hint}") from None
            print(f"warning: {target.name}: the transfer broke off at {now} bytes ({_reason(e)}); resuming",
                  file=sys.stderr)
    try:
        verify_file(part, sha256=sha256, size=size)
    except DownloadError as e:
        part.unlink(missing_ok=True)  # a wrong file is not worth resuming
        raise DownloadError(f"{url}: {str(e).replace(part.name, 'downloaded file')}; deleted it, run again "
                            "to retry") from None
    os.replace(part, target)
    if not quiet:
        print(f"{target}: {target.stat().st_size} bytes{', SHA256 verified' if sha256 else ''}")
    return target


def make_readable(path: str | os.PathLike) -> None:
    """Give a file made with tempfile.mkstemp (mode 0600) the usual permissions (0666 minus umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def run_main(body: Callable[[], int | None]) -> int:
    """Run a data script's body: an InrError is one line on stderr and exit code 2; Ctrl-C keeps the
    partial download for the next run."""
    try:
        return int(body() or 0)
    except InrError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: partial downloads (*.part) are kept; run the same command again to resume",
              file=sys.stderr)
        return 130


# The command-line side of the scripts in data/: the same flags, wording and exit codes everywhere.

class ScriptParser(argparse.ArgumentParser):
    """The flag parser of a data script. `prog` names the script in its usage (it runs from any directory, so
    sys.argv[0] may be a path); the first line of its docstring `doc` is the description of --help. With
    `data_root` (the script's own folder, data/): --data_root, the folder that receives `receives`/."""

    def __init__(self, prog: str, doc: str, data_root: str | os.PathLike | None = None, receives: str = ""):
        super().__init__(prog=prog, description=doc.splitlines()[0])
        if data_root is not None:
            self.add_argument("--data_root", default=str(data_root),
                              help=f"folder that receives {receives}/ (default: the folder of this script)")

    def add_verify_args(self, no_verify: str, checksums: str | None = None) -> None:
        """--checksums FILE (only given its help text), a sha256sum listing that replaces the built-in
        checksums, and --no_verify."""
        if checksums is not None:
            self.add_argument("--checksums", metavar="FILE", help=checksums)
        self.add_argument("--no_verify", action="store_true", help=no_verify)

    def add_transfer_args(self, retries: int | None = None) -> None:
        """--timeout, --retries (only given a default) and --no_progress: download()'s keywords."""
        self.add_argument("--timeout", type=float, default=60.0, help="seconds without data before giving up")
        if retries is not None:
            self.add_argument("--retries", type=int, default=retries, help="resumes of a transfer that broke off")
        self.add_argument("--no_progress", action="store_true", help="no progress bar")


def run_script(parse_args: Callable[[list[str] | None], argparse.Namespace], argv: list[str] | None,
               body: Callable[[argparse.Namespace], int | None]) -> int:
    """A data script's main(): body(parse_args(argv)) under run_main. --help and usage errors return
    argparse's exit code instead of raising SystemExit, so that main() can also be called in-process."""
    def parsed_body():
        try:
            opts = parse_args(argv)
        except SystemExit as e:
            return e.code
        return body(opts)
    return run_main(parsed_body)
