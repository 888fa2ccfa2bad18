"""Fetch the Stanford Bunny and normalize it for the 3D shape tools (dataset `stanford`).

    python data/fetch_mesh.py                          # -> data/stanford/bunny.ply, bunny_normalized.obj
    python data/fetch_mesh.py --from_file ~/Downloads/bunny.tar.gz     # offline, from a local copy
    python shape_compression/overfitINR3D.py --data_root data --dataset stanford

Downloads bunny.tar.gz from the Stanford 3D Scanning Repository, takes the full-resolution
reconstruction bunny/reconstruction/bun_zipper.ply (35,947 vertices, 69,451 triangles) out of it and
checks its size and SHA256, then runs shape_compression/normalize_shapes.py on it (centre of the
bounding box at the origin, farthest vertex at radius 1), which writes bunny_normalized.obj.
--from_file takes a local bunny.tar.gz or bun_zipper.ply instead of downloading. An interrupted
download resumes; files appear under their final names only when complete. The armadillo the paper
uses ships normalized with the paper's repository (data/armadillo/armadillo_normalized.obj).
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
try:
    import inrcompress.signals.download  # noqa: F401
except ImportError:  # not installed: use the package of this checkout
    sys.path.insert(0, str(HERE.parent / "lib"))

from inrcompress.signals.download import ScriptParser, download, make_readable, run_script, verify_file
from inrcompress.errors import InrError

BUNNY_URL = "http://graphics.stanford.edu/pub/3Dscanrep/bunny.tar.gz"
BUNNY_MEMBER = "reconstruction/bun_zipper.ply"
# bun_zipper.ply of the Stanford 3D Scanning Repository (ASCII PLY, header "comment zipper output").
BUNNY_SIZE = 3033195
BUNNY_SHA256 = "b1acc63bece78444aa2e15bdcc72371a201279b98c6f5d4b74c993d02f0566fe"


def parse_args(argv):
    parser = ScriptParser("fetch_mesh.py", __doc__, data_root=HERE, receives="stanford")
    parser.add_argument("--url", default=BUNNY_URL, help="the bunny archive (default: %(default)s)")
    parser.add_argument("--from_file", metavar="PATH", help="a local bunny.tar.gz or bun_zipper.ply")
    parser.add_argument("--sha256", default=BUNNY_SHA256, help="expected SHA256 of bun_zipper.ply")
    parser.add_argument("--size", type=int, default=BUNNY_SIZE, help="expected size of bun_zipper.ply (bytes)")
    parser.add_verify_args(no_verify="do not check the mesh's size and SHA256")
    parser.add_argument("--keep_archive", action="store_true", help="keep bunny.tar.gz")
    parser.add_argument("--no_normalize", action="store_true", help="only fetch the mesh")
    parser.add_transfer_args()
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run_script(parse_args, argv, fetch)


def extract_member(archive: Path, target: Path) -> None:
    """Copy the bun_zipper.ply of a bunny.tar.gz to target (atomically)."""
    try:
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(BUNNY_MEMBER)]
            if not members:
                members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith("/bun_zipper.ply")]
            if not members:
                raise InrError(f"{archive} holds no {BUNNY_MEMBER}")
            source = tar.extractfile(members[0])
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as sink:
                shutil.copyfileobj(source, sink)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise InrError(f"cannot read {archive}: {e}") from None
    make_readable(tmp)
    os.replace(tmp, target)


def normalize(mesh: Path) -> int:
    """Run the package's normalize_shapes tool on `mesh`; a clear message if it is not available."""
    try:
        from inrcompress.tools.normalize_shapes import main as normalize_main
    except ImportError as e:
        print(f"{mesh} fetched, but not normalized: the 3D shape tools are not available here ({e}). Install "
              "the shapes extra (pip install -e '.[shapes]') and run:\n"
              f"  python shape_compression/normalize_shapes.py --shape_glob '{mesh}'", file=sys.stderr)
        return 0
    return normalize_main(["--shape_glob", str(mesh)])


def fetch(opts) -> int:
    folder = Path(opts.data_root) / "stanford"
    folder.mkdir(parents=True, exist_ok=True)
    mesh = folder / "bunny.ply"
    sha, size = (None, None) if opts.no_verify else (opts.sha256, opts.size)
    if mesh.is_file():
        verify_file(mesh, sha256=sha, size=size)
        print(f"{mesh}: present and verified")
    else:
        if opts.from_file:
            source = Path(opts.from_file)
            if not source.is_file():
                raise InrError(f"--from_file: {source} not found")
            archive = source if tarfile.is_tarfile(source) else None
        else:
            name = opts.url.rstrip("/").rsplit("/", 1)[-1] or "bunny.tar.gz"
            source = download(opts.url, folder / f".{name}.download", progress=not opts.no_progress,
                              timeout=opts.timeout, quiet=True)
            archive = source if tarfile.is_tarfile(source) else None  # else the .ply itself
        staged = folder / ".bunny.ply.staged"
        if archive is not None:
            extract_member(archive, staged)
        else:
            shutil.copyfile(source, staged)
        try:
            verify_file(staged, sha256=sha, size=size)
        except InrError as e:
            staged.unlink(missing_ok=True)
            raise InrError(f"bun_zipper.ply from {source}: {str(e).split(': ', 1)[-1]}") from None
        os.replace(staged, mesh)
        if not opts.from_file and not opts.keep_archive:
            source.unlink()
        print(f"{mesh}: {mesh.stat().st_size} bytes{'' if opts.no_verify else ', SHA256 verified'}")
    if opts.no_normalize:
        return 0
    return normalize(mesh)


if __name__ == "__main__":
    sys.exit(main())
