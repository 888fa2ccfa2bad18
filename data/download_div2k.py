"""Download DIV2K (the high-resolution training and validation images) into <data_root>/DIV2K.

    python data/download_div2k.py                     # into data/DIV2K next to this script
    python data/download_div2k.py --data_root /datasets --keep_zip

Result (what trainMetaSiren.py --maml_dataset DIV2K reads):
    DIV2K/DIV2K_train_HR/0001.png .. 0800.png
    DIV2K/DIV2K_valid_HR/0801.png .. 0900.png

Each zip (3.5 GB and 449 MB, from http://data.vision.ee.ethz.ch/cvl/DIV2K/) is checked against its
size and SHA256 (as listed by TensorFlow Datasets, tensorflow_datasets/url_checksums/div2k.txt),
then every member's CRC is checked while it is unpacked into a temporary folder, which is renamed
into place only when complete. The zip is deleted afterwards unless --keep_zip. An interrupted
download resumes where it stopped (run the same command again). Runs from any working directory.
"""

from __future__ import annotations

import shutil
import sys
import zipfile
from pathlib import Path, PurePosixPath

HERE = Path(__file__).resolve().parent
try:
    import inrcompress.signals.download  # noqa: F401
except ImportError:  # not installed: use the package of this checkout
    sys.path.insert(0, str(HERE.parent / "lib"))

from inrcompress.signals.download import ScriptParser, download, read_sha256sums, run_script
from inrcompress.errors import InrError

BASE_URL = "http://data.vision.ee.ethz.ch/cvl/DIV2K/"
# split folder -> (zip, bytes, SHA256, images)
SPLITS = {
    "DIV2K_train_HR": ("DIV2K_train_HR.zip", 3530603713,
                       "9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335", 800),
    "DIV2K_valid_HR": ("DIV2K_valid_HR.zip", 448993893,
                       "20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc", 100),
}


def parse_args(argv):
    parser = ScriptParser("download_div2k.py", __doc__, data_root=HERE, receives="DIV2K")
    parser.add_argument("--base_url", default=BASE_URL, help="where the zips are (default: %(default)s)")
    parser.add_argument("--splits", nargs="+", choices=sorted(SPLITS), default=sorted(SPLITS),
                        help="which parts (default: both)")
    parser.add_verify_args(checksums="a sha256sum listing of the zips to verify against instead of the built-in "
                                     "values (sizes and image counts are then not checked)",
                           no_verify="do not check the zips' SHA256/size (the CRCs of the members are still checked)")
    parser.add_argument("--keep_zip", action="store_true", help="keep the zips after unpacking")
    parser.add_transfer_args(retries=5)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run_script(parse_args, argv, fetch)


def _png_count(folder: Path) -> int:
    return sum(1 for p in folder.glob("*.png")) if folder.is_dir() else 0


def unpack(zip_path: Path, split: str, root: Path) -> int:
    """Unpack the members under `<split>/` of the zip into root/<split> (atomically: a temporary
    folder renamed at the end); every member's CRC is checked. Returns the number of files."""
    staging = root / f".{split}.unpacking"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    count = 0
    try:
        with zipfile.ZipFile(zip_path) as archive:
            for info in archive.infolist():
                name = PurePosixPath(info.filename)
                if info.is_dir() or name.parts[:1] != (split,) or len(name.parts) < 2:
                    continue
                if any(part in ("..", "") or part.startswith("/") for part in name.parts):
                    raise InrError(f"{zip_path.name}: unsafe member name {info.filename!r}")
                out = staging.joinpath(*name.parts[1:])
                out.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as source, open(out, "wb") as sink:  # raises BadZipFile on a CRC error
                    shutil.copyfileobj(source, sink, 1 << 20)
                count += 1
    except zipfile.BadZipFile as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise InrError(f"{zip_path}: damaged zip ({e}); delete it and run again") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if count == 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise InrError(f"{zip_path.name} holds no files under {split}/")
    target = root / split
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return count


def fetch(opts) -> int:
    root = Path(opts.data_root) / "DIV2K"
    root.mkdir(parents=True, exist_ok=True)
    overrides = read_sha256sums(opts.checksums) if opts.checksums else None
    base = opts.base_url if opts.base_url.endswith("/") else opts.base_url + "/"
    for split in opts.splits:
        zip_name, size, digest, images = SPLITS[split]
        if overrides is not None:
            if zip_name not in overrides:
                raise InrError(f"{opts.checksums} lists no {zip_name}")
            size, digest, images = None, overrides[zip_name], None
        if opts.no_verify:
            size, digest = None, None
        folder = root / split
        done_marker = root / f".{split}.complete"
        present = _png_count(folder)
        recorded = int(done_marker.read_text() or -1) if done_marker.is_file() else None
        if present and (present == recorded or (recorded is None and present == images)):
            print(f"{folder}: present ({present} images), skipped")
            continue
        zip_path = download(base + zip_name, root / zip_name, sha256=digest, size=size,
                            progress=not opts.no_progress, timeout=opts.timeout, retries=opts.retries)
        print(f"unpacking {zip_path.name} ...", flush=True)
        count = unpack(zip_path, split, root)
        pngs = _png_count(folder)
        if images is not None and pngs != images:
            raise InrError(f"{folder} holds {pngs} PNGs after unpacking, expected {images}")
        done_marker.write_text(str(pngs))
        if not opts.keep_zip:
            zip_path.unlink()
        print(f"{folder}: {count} files ({pngs} PNGs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
