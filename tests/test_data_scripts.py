"""The dataset scripts of data/ and the download helper, against a local HTTP server.

The server (http.server in a thread on 127.0.0.1) serves small in-memory files, honours
`Range: bytes=N-` (206 + Content-Range) unless told not to, and can break a transfer off halfway.
Nothing here touches the network.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import socket
import subprocess
import sys
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from inrcompress.signals.download import DownloadError, download, read_sha256sums, sha256_file
from PIL import Image

from .conftest import photo_crop

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"


# ------------------------------------------------------------------------------------------------
# The test server


class FileServer:
    """Serves `files` ({url path: bytes}); records (path, Range header, status) of every request."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None, int]] = []
        self.range_support = True
        self.break_after: dict[str, int] = {}  # path -> bytes sent before the connection is dropped (once)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                data = server.files.get(self.path)
                range_header = self.headers.get("Range")
                if data is None:
                    server.requests.append((self.path, range_header, 404))
                    self.send_error(404)
                    return
                start = 0
                if range_header and server.range_support:
                    start = int(range_header.split("=")[1].split("-")[0])
                    if start >= len(data):
                        server.requests.append((self.path, range_header, 416))
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                    status = 206
                else:
                    self.send_response(200)
                    status = 200
                server.requests.append((self.path, range_header, status))
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                cut = server.break_after.pop(self.path, None)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def statuses(self, path: str) -> list[int]:
        return [status for p, _, status in self.requests if p == path]


@pytest.fixture
def server():
    srv = FileServer()
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def closed_port() -> int:
    """A local port nobody listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"data_{name}", DATA / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one_error_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("error: ")
    return lines[0]


def payload(n: int = 50_000, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def png_bytes(name: str = "astronaut", height: int = 24, width: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(photo_crop(name, height, width)).save(buffer, format="PNG")
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------
# The download helper


def test_download_verifies_and_renames_atomically(server, tmp_path):
    data = payload()
    server.files["/f.bin"] = data
    target = tmp_path / "sub" / "f.bin"
    download(server.url + "/f.bin", target, sha256=sha(data), size=len(data), progress=False, quiet=True)
    assert target.read_bytes() == data
    assert not (tmp_path / "sub" / "f.bin.part").exists()
    # present and verified: no second request
    download(server.url + "/f.bin", target, sha256=sha(data), size=len(data), progress=False, quiet=True)
    assert server.statuses("/f.bin") == [200]


def test_resumes_a_partial_download_with_range(server, tmp_path):
    data = payload(80_000, seed=1)
    server.files["/big.bin"] = data
    target = tmp_path / "big.bin"
    (tmp_path / "big.bin.part").write_bytes(data[:30_000])  # what an interrupted run left
    download(server.url + "/big.bin", target, sha256=sha(data), progress=False, quiet=True)
    assert target.read_bytes() == data
    assert server.requests == [("/big.bin", "bytes=30000-", 206)]


def test_a_transfer_that_breaks_off_is_resumed(server, tmp_path):
    data = payload(120_000, seed=2)
    server.files["/x.bin"] = data
    server.break_after["/x.bin"] = 40_000
    target = tmp_path / "x.bin"
    download(server.url + "/x.bin", target, sha256=sha(data), size=len(data), progress=False, quiet=True)
    assert target.read_bytes() == data
    assert [(r, s) for _, r, s in server.requests] == [(None, 200), ("bytes=40000-", 206)]


def test_a_server_without_range_support_restarts(server, tmp_path):
    data = payload(20_000, seed=3)
    server.files["/y.bin"] = data
    server.range_support = False
    (tmp_path / "y.bin.part").write_bytes(b"\0" * 5_000)  # a stale prefix that is not even right
    download(server.url + "/y.bin", tmp_path / "y.bin", sha256=sha(data), progress=False, quiet=True)
    assert (tmp_path / "y.bin").read_bytes() == data


def test_a_complete_part_file_gets_416_and_is_verified(server, tmp_path):
    data = payload(10_000, seed=4)
    server.files["/z.bin"] = data
    (tmp_path / "z.bin.part").write_bytes(data)
    download(server.url + "/z.bin", tmp_path / "z.bin", sha256=sha(data), progress=False, quiet=True)
    assert (tmp_path / "z.bin").read_bytes() == data
    assert server.statuses("/z.bin") == [416]


def test_wrong_checksum_is_an_error_and_leaves_nothing(server, tmp_path):
    server.files["/f.bin"] = payload(5_000)
    with pytest.raises(DownloadError, match="SHA256"):
        download(server.url + "/f.bin", tmp_path / "f.bin", sha256="0" * 64, progress=False, quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_http_error_and_connection_refused(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.url + "/missing", tmp_path / "m", progress=False, quiet=True)
    with pytest.raises(DownloadError, match="connection refused"):
        download(f"http://127.0.0.1:{closed_port()}/f", tmp_path / "f", progress=False, quiet=True, timeout=5)


# ------------------------------------------------------------------------------------------------
# download_kodak.py


def kodak_server(server, tmp_path, names=("kodim01.png", "kodim02.png")) -> Path:
    lines = []
    for i, name in enumerate(names):
        data = png_bytes(["astronaut", "coffee", "chelsea"][i % 3])
        server.files[f"/kodak/{name}"] = data
        lines.append(f"{sha(data)}  {name}")
    sums = tmp_path / "SHA256SUMS"
    sums.write_text("\n".join(lines) + "\n")
    return sums


def test_download_kodak_from_any_directory(server, tmp_path, monkeypatch, capsys):
    sums = kodak_server(server, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    kodak = load_script("download_kodak")
    root = tmp_path / "data"
    args = ["--data_root", str(root), "--base_url", server.url + "/kodak", "--checksums", str(sums), "--no_progress"]
    assert kodak.main(args) == 0
    assert sorted(p.name for p in (root / "KODAK").iterdir()) == ["kodim01.png", "kodim02.png"]
    assert "all verified" in capsys.readouterr().out
    assert kodak.main(args) == 0  # everything present: no new requests
    assert len(server.requests) == 2


def test_download_kodak_resumes_a_partial_file(server, tmp_path):
    sums = kodak_server(server, tmp_path)
    data = server.files["/kodak/kodim02.png"]
    folder = tmp_path / "data" / "KODAK"
    folder.mkdir(parents=True)
    (folder / "kodim02.png.part").write_bytes(data[: len(data) // 2])
    kodak = load_script("download_kodak")
    assert kodak.main(["--data_root", str(tmp_path / "data"), "--base_url", server.url + "/kodak/",
                       "--checksums", str(sums), "--no_progress"]) == 0
    assert (folder / "kodim02.png").read_bytes() == data
    assert ("/kodak/kodim02.png", f"bytes={len(data) // 2}-", 206) in server.requests


def test_download_kodak_wrong_checksum(server, tmp_path, capsys):
    sums = kodak_server(server, tmp_path, names=("kodim01.png",))
    sums.write_text(f"{'ab' * 32}  kodim01.png\n")
    kodak = load_script("download_kodak")
    code = kodak.main(["--data_root", str(tmp_path / "data"), "--base_url", server.url + "/kodak",
                       "--checksums", str(sums), "--no_progress"])
    assert code == 2
    assert "SHA256" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "data" / "KODAK" / "kodim01.png").exists()


def test_download_kodak_unreachable_host_one_line(tmp_path):
    """As a user runs it: a separate process, another working directory, nobody listening."""
    result = subprocess.run([sys.executable, str(DATA / "download_kodak.py"), "--data_root", str(tmp_path),
                             "--base_url", f"http://127.0.0.1:{closed_port()}/", "--images", "kodim01",
                             "--no_progress", "--timeout", "5"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert "connection refused" in line and "kodim01.png" in line


def test_kodak_table_matches_shared_checksums():
    kodak = load_script("download_kodak")
    assert [name for name, _, _ in kodak.KODAK] == [f"kodim{i:02d}.png" for i in range(1, 25)]
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "KODAK" / "SHA256SUMS"
    if shared.is_file():
        assert read_sha256sums(shared) == {name: digest for name, _, digest in kodak.KODAK}


# ------------------------------------------------------------------------------------------------
# download_div2k.py


def div2k_zip(split: str, names: list[str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{split}/", "")
        for i, name in enumerate(names):
            archive.writestr(f"{split}/{name}", png_bytes(["coffee", "chelsea", "rocket"][i % 3], 20, 30))
    return buffer.getvalue()


def test_download_div2k_layout_resume_and_skip(server, tmp_path, monkeypatch):
    train = div2k_zip("DIV2K_train_HR", ["0001.png", "0002.png"])
    valid = div2k_zip("DIV2K_valid_HR", ["0801.png"])
    server.files = {"/div2k/DIV2K_train_HR.zip": train, "/div2k/DIV2K_valid_HR.zip": valid}
    sums = tmp_path / "sums"
    sums.write_text(f"{sha(train)}  DIV2K_train_HR.zip\n{sha(valid)}  DIV2K_valid_HR.zip\n")
    root = tmp_path / "data"
    (root / "DIV2K").mkdir(parents=True)
    (root / "DIV2K" / "DIV2K_train_HR.zip.part").write_bytes(train[:1000])  # an interrupted run
    monkeypatch.chdir(tmp_path)
    div2k = load_script("download_div2k")
    args = ["--data_root", str(root), "--base_url", server.url + "/div2k", "--checksums", str(sums), "--no_progress"]
    assert div2k.main(args) == 0
    assert sorted(p.name for p in (root / "DIV2K" / "DIV2K_train_HR").iterdir()) == ["0001.png", "0002.png"]
    assert [p.name for p in (root / "DIV2K" / "DIV2K_valid_HR").iterdir()] == ["0801.png"]
    assert not list((root / "DIV2K").glob("*.zip*"))  # zips deleted after unpacking
    assert ("/div2k/DIV2K_train_HR.zip", "bytes=1000-", 206) in server.requests
    count = len(server.requests)
    assert div2k.main(args) == 0  # unpacked already: skipped
    assert len(server.requests) == count


def test_download_div2k_damaged_zip(server, tmp_path, capsys):
    good = div2k_zip("DIV2K_valid_HR", ["0801.png"])
    damaged = bytearray(good)
    damaged[len(good) // 2] ^= 0xFF  # inside the stored PNG: the CRC check fails
    server.files = {"/DIV2K_valid_HR.zip": bytes(damaged)}
    sums = tmp_path / "sums"
    sums.write_text(f"{sha(bytes(damaged))}  DIV2K_valid_HR.zip\n")
    div2k = load_script("download_div2k")
    code = div2k.main(["--data_root", str(tmp_path), "--base_url", server.url, "--checksums", str(sums),
                       "--splits", "DIV2K_valid_HR", "--no_progress"])
    assert code == 2
    assert "damaged zip" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "DIV2K" / "DIV2K_valid_HR").exists()


def test_download_div2k_offline(tmp_path, capsys):
    div2k = load_script("download_div2k")
    code = div2k.main(["--data_root", str(tmp_path), "--base_url", f"http://127.0.0.1:{closed_port()}",
                       "--splits", "DIV2K_valid_HR", "--no_progress", "--timeout", "5"])
    assert code == 2
    assert "connection refused" in one_error_line(capsys.readouterr().err)


# ------------------------------------------------------------------------------------------------
# CelebA100


def test_celeba100_list_is_the_papers():
    names = (DATA / "CelebA100.csv").read_text().split()
    ids = [int(Path(n).stem) for n in names]
    assert len(names) == len(set(names)) == 100
    assert all(n.endswith(".png") for n in names)
    assert min(ids) == 182664 and max(ids) == 202544  # spec 2.8; all in the official test partition
    assert sha256_file(DATA / "CelebA100.csv") == "96785956575df27c1fcdf651a86ecdf9808cc36b45f109537263c43b1c2003bc"


def test_celeba100dataset_extracts_the_listed_images(tmp_path, monkeypatch, capsys):
    celeba = tmp_path / "CelebA" / "img_align_celeba_png"
    celeba.mkdir(parents=True)
    names = ["182664.png", "190000.png", "202544.png"]
    for i, name in enumerate(names + ["000001.png"]):
        (celeba / name).write_bytes(png_bytes(["astronaut", "coffee", "chelsea", "rocket"][i], 27, 22))
    listing = tmp_path / "list.csv"
    listing.write_text("\n".join(names) + "\n")
    monkeypatch.chdir(tmp_path / "CelebA")
    script = load_script("celeba100dataset")
    out = tmp_path / "CelebA100"
    args = ["--celeba_dir", str(tmp_path / "CelebA"), "--list", str(listing), "--out", str(out)]
    assert script.main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == names
    assert (out / "190000.png").read_bytes() == (celeba / "190000.png").read_bytes()
    assert script.main(args) == 0
    assert "3 already there" in capsys.readouterr().out


def test_celeba100dataset_missing_images_one_line(tmp_path, capsys):
    (tmp_path / "img_align_celeba_png").mkdir()
    script = load_script("celeba100dataset")
    code = script.main(["--celeba_dir", str(tmp_path), "--out", str(tmp_path / "out")])  # the paper's list
    assert code == 2
    line = one_error_line(capsys.readouterr().err)
    assert "100 of the 100 listed images" in line and "img_align_celeba_png" in line
    assert not (tmp_path / "out").exists()


def test_celeba100dataset_jpeg_version_only_with_allow_jpg(tmp_path):
    folder = tmp_path / "img_align_celeba"
    folder.mkdir()
    Image.fromarray(photo_crop("chelsea", 27, 22)).save(folder / "182664.jpg", quality=90)
    listing = tmp_path / "l.csv"
    listing.write_text("182664.png\n")
    script = load_script("celeba100dataset")
    args = ["--celeba_dir", str(tmp_path), "--list", str(listing), "--out", str(tmp_path / "out")]
    assert script.main(args) == 2
    assert script.main(args + ["--allow_jpg"]) == 0
    with Image.open(tmp_path / "out" / "182664.png") as img:
        assert img.format == "PNG" and img.size == (22, 27)


# ------------------------------------------------------------------------------------------------
# fetch_mesh.py

TETRAHEDRON_PLY = b"""ply
format ascii 1.0
element vertex 4
property float x
property float y
property float z
element face 4
property list uchar int vertex_indices
end_header
0 0 0
2 0 0
0 2 0
0 0 2
3 0 2 1
3 0 1 3
3 0 3 2
3 1 2 3
"""


def test_fetch_mesh_downloads_extracts_and_normalizes(server, tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("bunny/reconstruction/bun_zipper.ply")
        info.size = len(TETRAHEDRON_PLY)
        tar.addfile(info, io.BytesIO(TETRAHEDRON_PLY))
    server.files["/bunny.tar.gz"] = buffer.getvalue()
    script = load_script("fetch_mesh")
    args = ["--data_root", str(tmp_path), "--url", server.url + "/bunny.tar.gz", "--sha256", sha(TETRAHEDRON_PLY),
            "--size", str(len(TETRAHEDRON_PLY)), "--no_progress"]
    assert script.main(args + ["--no_normalize"]) == 0
    folder = tmp_path / "stanford"
    assert (folder / "bunny.ply").read_bytes() == TETRAHEDRON_PLY
    assert sorted(p.name for p in folder.iterdir()) == ["bunny.ply"]
    if importlib.util.find_spec("inrcompress.tools.normalize_shapes") is None:
        pytest.skip("the 3D shape tools (inrcompress.tools.normalize_shapes) are not in this checkout")
    pytest.importorskip("trimesh")
    assert script.main(args) == 0  # the mesh is present: only normalized
    vertices = np.array([[float(v) for v in line.split()[1:4]]
                         for line in (folder / "bunny_normalized.obj").read_text().splitlines()
                         if line.startswith("v ")])
    assert np.isclose(np.linalg.norm(vertices, axis=1).max(), 1.0, atol=1e-4)


def test_fetch_mesh_wrong_checksum(server, tmp_path, capsys):
    server.files["/bun_zipper.ply"] = TETRAHEDRON_PLY
    script = load_script("fetch_mesh")
    code = script.main(["--data_root", str(tmp_path), "--url", server.url + "/bun_zipper.ply", "--no_progress"])
    assert code == 2  # the default checksum is the real bunny's; the archive is not even a tar
    one_error_line(capsys.readouterr().err)
