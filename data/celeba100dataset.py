"""Extract the 100 CelebA test images the paper reports on (CelebA100.csv) from a CelebA download.

    python data/celeba100dataset.py --celeba_dir ~/datasets/CelebA --out data/CelebA100

CelebA is not downloaded by a script (its licence asks for a manual download): get
img_align_celeba_png.7z ("Align&Cropped Images", PNG version) from the official CelebA page/Google
Drive, unpack it, and point --celeba_dir at the folder img_align_celeba_png or at the folder that
holds it. For meta-training on CelebA (trainMetaSiren.py --maml_dataset CelebA) put it and
list_eval_partition.csv into <data_root>/CelebA/.

--list names the images, one file name per line (default: CelebA100.csv next to this script, the
paper's list: 100 images of the test partition, 182664.png .. 202544.png). Files are copied byte for
byte (written to a temporary name, then renamed); those already present and equal are skipped.
--allow_jpg takes <id>.jpg from the JPEG version (img_align_celeba) when the PNG is missing and
stores it as PNG: the JPEG version is a lossy copy, so results on it are not the paper's.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
try:
    import inrcompress.signals.download  # noqa: F401
except ImportError:  # not installed: use the package of this checkout
    sys.path.insert(0, str(HERE.parent / "lib"))

from inrcompress.signals.download import ScriptParser, make_readable, run_script
from inrcompress.errors import InrError

IMAGE_FOLDERS = ("img_align_celeba_png", "img_align_celeba")


def parse_args(argv):
    parser = ScriptParser("celeba100dataset.py", __doc__)
    parser.add_argument("--celeba_dir", default=str(HERE / "CelebA"),
                        help="img_align_celeba_png, or a folder holding it (default: %(default)s)")
    parser.add_argument("--list", default=str(HERE / "CelebA100.csv"),
                        help="file names to extract, one per line (default: %(default)s)")
    parser.add_argument("--out", default=str(HERE / "CelebA100"), help="output folder (default: %(default)s)")
    parser.add_argument("--allow_jpg", action="store_true",
                        help="use <id>.jpg (converted to PNG) where <id>.png is missing; not the paper's data")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run_script(parse_args, argv, extract)


def read_list(path: Path) -> list[str]:
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise InrError(f"cannot read the image list {path}: {e.strerror or e}") from None
    names = []
    for line in lines:
        name = line.split(",")[0].strip()
        if not name or name.startswith("#") or name.lower() in ("image_id", "filename", "file"):
            continue
        if "/" in name or "\\" in name or name.startswith("."):
            raise InrError(f"{path}: {name!r} is not a plain file name")
        names.append(name)
    if not names:
        raise InrError(f"{path} lists no images")
    if len(set(names)) != len(names):
        raise InrError(f"{path} lists an image twice")
    return names


def image_folders(celeba_dir: Path) -> list[Path]:
    """Folders to look in: the given one and its img_align_celeba(_png) subfolders that exist."""
    if not celeba_dir.is_dir():
        raise InrError(f"CelebA folder not found: {celeba_dir} (see --help for what to download)")
    return [celeba_dir] + [celeba_dir / sub for sub in IMAGE_FOLDERS if (celeba_dir / sub).is_dir()]


def find_source(name: str, folders: list[Path], allow_jpg: bool) -> tuple[Path | None, bool]:
    """(path, needs conversion) of a listed image, (None, False) when missing."""
    for folder in folders:
        if (folder / name).is_file():
            return folder / name, False
    if allow_jpg:
        jpg = Path(name).stem + ".jpg"
        for folder in folders:
            if (folder / jpg).is_file():
                return folder / jpg, True
    return None, False


def _write_atomic(target: Path, source: Path, convert: bool) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if convert:
            from PIL import Image

            with Image.open(source) as img:
                img.convert("RGB").save(tmp, format="PNG")
        else:
            shutil.copyfile(source, tmp)
            if os.path.getsize(tmp) != os.path.getsize(source):
                raise InrError(f"copying {source} to {target} was incomplete (disk full?)")
        make_readable(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _same_file(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            block_a, block_b = fa.read(1 << 20), fb.read(1 << 20)
            if block_a != block_b:
                return False
            if not block_a:
                return True


def extract(opts) -> int:
    names = read_list(Path(opts.list))
    folders = image_folders(Path(opts.celeba_dir))
    sources = {name: find_source(name, folders, opts.allow_jpg) for name in names}
    missing = [name for name, (path, _) in sources.items() if path is None]
    if missing:
        raise InrError(f"{len(missing)} of the {len(names)} listed images are not in {opts.celeba_dir} "
                       f"(first: {missing[0]}); it must hold img_align_celeba_png (the PNG version)"
                       f"{'' if opts.allow_jpg else ', or pass --allow_jpg for the JPEG version'}")
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    copied = skipped = converted = 0
    for name, (source, convert) in sources.items():
        target = out / (Path(name).stem + ".png")
        if not convert and target.is_file() and _same_file(source, target):
            skipped += 1
            continue
        _write_atomic(target, source, convert)
        copied += 1
        converted += convert
    note = f", {converted} converted from JPEG (not the paper's PNG data)" if converted else ""
    print(f"{out}: {len(names)} images ({copied} written, {skipped} already there{note})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
