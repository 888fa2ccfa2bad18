"""Classical image codecs, the baselines our curves are compared with: a registry, one class per codec.

Registered here: JPEG, JPEG2000, WebP and AVIF through Pillow; HEVC intra (x265, the codec inside
BPG) at 4:4:4 and 4:2:0 through pillow-heif; JPEG XL (libjxl) through pillow-jxl-plugin. The last
two come with `pip install 'inrcompress[codecs]'`; a codec whose library is missing says so in one
line (`ImageCodec.missing`) and the tool skips it.

Conventions, the same for every codec and for our experiments (and CompressAI's published curves):
bpp = 8 x bytes of the encoded file / pixels of the image; PSNR (RGB, peak 255) and MS-SSIM are
measured on the decoded 8-bit image against the original and averaged per image; each point of a
codec curve is one setting (quality, target rate or QP) applied to every image. `psnr-of-mean-mse`
(PSNR of the MSE averaged over the images) is recorded beside it for papers that use it.

A new codec is one class: subclass ImageCodec, set its class attributes, implement `encode` (and
`decode` when Pillow cannot open its bytes), and decorate it with @register_codec. `evaluate.py
codecs` then offers it in --codecs, with its sweep flag --<name>_<sweep_flag> and each of its
`options` as --<name>_<option>; nothing else changes.
"""

from __future__ import annotations

import importlib.metadata
import io
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from inrcompress.errors import InrError

INSTALL_HINT = "pip install 'inrcompress[codecs]'"


@dataclass(frozen=True)
class CodecOption:
    """One encoder option of a codec; its type is the type of the default."""

    name: str
    default: str | int
    help: str
    choices: tuple = ()


class ImageCodec:
    """A classical image codec: encode a uint8 (H, W, C) image at one setting, decode the bytes."""

    name: ClassVar[str]  # registry key and flag prefix: jpeg, hevc444, ...
    label: ClassVar[str]  # curve name
    setting: ClassVar[str]  # what the sweep varies: quality, target_bpp, qp
    sweep_flag: ClassVar[str] = "qualities"  # --<name>_<sweep_flag>
    setting_type: ClassVar[type] = int
    defaults: ClassVar[tuple]  # the default sweep
    options: ClassVar[tuple[CodecOption, ...]] = ()

    def missing(self) -> str | None:
        """Why the codec cannot run here (one line), or None when it can."""
        return None

    def version(self) -> str:
        raise NotImplementedError

    def encode(self, image: np.ndarray, setting: float, options: dict) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes, channels: int) -> np.ndarray:
        """The decoded uint8 (H, W, channels) image; Pillow opens the bytes unless a codec says otherwise."""
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            array = np.asarray(img.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
        return array[:, :, None] if array.ndim == 2 else array

    def describe(self, options: dict) -> dict:
        """The encoder settings a curve records (the options, plus what the codec fixes)."""
        return dict(options)

    def details(self, data: bytes, pixels: int) -> dict:
        """Extra per-image numbers of an encoded file (averaged into the curve like bpp)."""
        return {}

    def resolve_options(self, given: dict | None = None) -> dict:
        """The codec's options: the defaults, overridden by `given` (checked against the choices)."""
        given = dict(given or {})
        known = {o.name: o for o in self.options}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise InrError(f"{self.label} has no option {', '.join(unknown)} (options: {', '.join(known) or 'none'})")
        out = {}
        for name, option in known.items():
            value = given.get(name, option.default)
            if option.choices and value not in option.choices:
                raise InrError(f"{self.label} {name} must be one of {', '.join(map(str, option.choices))}, got {value!r}")
            out[name] = value
        return out


CODECS: dict[str, ImageCodec] = {}


def register_codec(cls: type[ImageCodec]) -> type[ImageCodec]:
    """Class decorator: put one instance of an ImageCodec subclass into CODECS under its name."""
    if cls.name in CODECS:
        raise InrError(f"an image codec named {cls.name!r} is already registered")
    CODECS[cls.name] = cls()
    return cls


def get_codec(name: str) -> ImageCodec:
    if name not in CODECS:
        raise InrError(f"unknown codec {name!r} ({', '.join(CODECS)})")
    return CODECS[name]


def _pil_image(image: np.ndarray):
    from PIL import Image

    return Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)


def _distribution_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


# ------------------------------------------------------------------------------------------------
# Pillow's own codecs

SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


class PillowCodec(ImageCodec):
    """A codec built into Pillow; `feature` is its PIL.features name."""

    feature: ClassVar[str]

    def missing(self) -> str | None:
        from PIL import features

        try:
            present = bool(features.check(self.feature))
        except ValueError:
            present = False
        return None if present else f"this Pillow has no {self.label} encoder ({self.version()})"

    def version(self) -> str:
        import PIL
        from PIL import features

        try:
            library = features.version(self.feature)
        except ValueError:
            library = None
        return f"Pillow {PIL.__version__}" + (f", {self.feature} {library}" if library else "")

    def encode(self, image: np.ndarray, setting: float, options: dict) -> bytes:
        buffer = io.BytesIO()
        _pil_image(image).save(buffer, **self.save_arguments(image, setting, options))
        return buffer.getvalue()

    def save_arguments(self, image: np.ndarray, setting: float, options: dict) -> dict:
        raise NotImplementedError


@register_codec
class Jpeg(PillowCodec):
    name, label, setting, feature = "jpeg", "JPEG", "quality", "jpg"
    defaults = tuple(range(5, 100, 5))
    options = (CodecOption("subsampling", "4:2:0", "chroma subsampling", tuple(SUBSAMPLING)),)

    def save_arguments(self, image, setting, options):
        return {"format": "JPEG", "quality": int(setting),
                "subsampling": SUBSAMPLING[options["subsampling"]] if image.shape[2] == 3 else -1}


@register_codec
class Jpeg2000(PillowCodec):
    name, label, setting, feature = "jpeg2000", "JPEG2000", "target_bpp", "jpg_2000"
    sweep_flag, setting_type = "bpps", float
    defaults = (0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)

    def save_arguments(self, image, setting, options):
        # 9/7 wavelet (irreversible) and the colour transform (mct): the codec's lossy mode. The rate is
        # OpenJPEG's compression ratio to the raw 8-bit image; the raw codestream (no JP2 boxes).
        if setting <= 0:
            raise InrError("JPEG2000 target bpp must be positive")
        levels = max(1, min(6, int(math.log2(min(image.shape[:2]))) + 1 - 2))
        return {"format": "JPEG2000", "irreversible": True, "mct": 1 if image.shape[2] == 3 else 0,
                "quality_mode": "rates", "quality_layers": [8.0 * image.shape[2] / float(setting)], "no_jp2": True,
                "num_resolutions": levels}

    def describe(self, options):
        return {"irreversible": True, "mct": 1, "quality_mode": "rates", "codestream": "j2k (no JP2 boxes)"}


@register_codec
class WebP(PillowCodec):
    name, label, setting, feature = "webp", "WebP", "quality", "webp"
    defaults = tuple(range(5, 100, 5))
    options = (CodecOption("method", 6, "0 fast .. 6 best", tuple(range(7))),)

    def save_arguments(self, image, setting, options):
        return {"format": "WEBP", "quality": int(setting), "method": int(options["method"])}


@register_codec
class Avif(PillowCodec):
    name, label, setting, feature = "avif", "AVIF", "quality", "avif"
    defaults = tuple(range(5, 100, 5))
    options = (CodecOption("speed", 6, "0 slow/best .. 10 fast", tuple(range(11))),
               CodecOption("subsampling", "4:2:0", "chroma subsampling", tuple(SUBSAMPLING)))

    def save_arguments(self, image, setting, options):
        return {"format": "AVIF", "quality": int(setting), "speed": int(options["speed"]),
                "subsampling": options["subsampling"]}


# ------------------------------------------------------------------------------------------------
# JPEG XL (libjxl, through pillow-jxl-plugin)


@register_codec
class JpegXL(ImageCodec):
    name, label, setting = "jxl", "JPEG XL", "quality"
    # libjxl maps quality to its butteraugli distance; below ~30 the distance grows fast (quality 1
    # is distance ~15), which is how JPEG XL reaches its lowest rates.
    defaults = (1,) + tuple(range(5, 100, 5))
    options = (CodecOption("effort", 7, "encoder effort, 1 fast .. 9 best (libjxl's default 7)", tuple(range(1, 10))),)

    def missing(self):
        try:
            import pillow_jxl  # noqa: F401 - registers the JXL format with Pillow
        except ImportError:
            return f"JPEG XL needs pillow-jxl-plugin ({INSTALL_HINT})"
        return None

    def version(self):
        return f"pillow-jxl-plugin {_distribution_version('pillow-jxl-plugin')} (bundled libjxl)"

    def encode(self, image, setting, options):
        import pillow_jxl  # noqa: F401

        buffer = io.BytesIO()
        # a bare codestream (no ISOBMFF container), as a JPEG XL file needs no more
        # one thread (0 = no parallel runner), as the HEVC codec: thread hand-offs crawl on a busy machine
        _pil_image(image).save(buffer, format="JXL", quality=int(setting), effort=int(options["effort"]),
                               use_container=False, num_threads=0)
        return buffer.getvalue()

    def decode(self, data, channels):
        from pillow_jxl import JpegXLImagePlugin

        threads = JpegXLImagePlugin.DECODE_THREADS
        JpegXLImagePlugin.DECODE_THREADS = 0
        try:
            return super().decode(data, channels)
        finally:
            JpegXLImagePlugin.DECODE_THREADS = threads


# ------------------------------------------------------------------------------------------------
# HEVC intra (x265 inside libheif, through pillow-heif)

X265_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")


def heif_picture_bytes(data: bytes) -> int:
    """Bytes of the coded HEVC picture in a HEIF file: the payload of its top-level mdat boxes
    (length-prefixed slice NAL units), without the ISOBMFF boxes and the parameter sets (in hvcC)."""
    offset, total = 0, 0
    while offset + 8 <= len(data):
        size, kind = int.from_bytes(data[offset:offset + 4], "big"), data[offset + 4:offset + 8]
        header = 8
        if size == 1:
            size, header = int.from_bytes(data[offset + 8:offset + 16], "big"), 16
        elif size == 0:
            size = len(data) - offset
        if size < header:
            raise InrError("not a HEIF file (bad box size)")
        if kind == b"mdat":
            total += size - header
        offset += size
    return total


class Hevc(ImageCodec):
    """HEVC intra through libheif's x265 encoder, set up as BPG's (bpgenc) x265 path: the preset
    (BPG's default compression level 8 = veryslow), tune ssim, constant QP, no psycho-visual
    optimisation (libheif turns psy-rd on and adaptive quantisation to mode 1; tune ssim sets
    psy-rd 0 and aq-mode 2, as BPG has them). RGB -> YCbCr (BT.601, full range) by libheif.
    bpp counts the whole HEIF file: a HEIF file carries about 370 bytes of boxes and parameter
    sets that a BPG file does not (bpp_picture counts the coded picture alone)."""

    setting, sweep_flag = "qp", "qps"
    defaults = (12, 17, 22, 27, 32, 37, 42, 47, 51)
    chroma: ClassVar[int]
    options = (CodecOption("preset", "veryslow", "x265 preset (bpgenc's default: veryslow)", X265_PRESETS),)

    def missing(self):
        try:
            import pillow_heif
        except ImportError:
            return f"HEVC needs pillow-heif ({INSTALL_HINT})"
        if "x265" not in pillow_heif.libheif_info().get("encoders", {}):
            return f"this pillow-heif has no x265 encoder ({self.version()})"
        return None

    def version(self):
        import pillow_heif

        info = pillow_heif.libheif_info()
        return (f"pillow-heif {pillow_heif.__version__}, libheif {info.get('libheif')}, "
                f"{info.get('encoders', {}).get('x265', 'no x265')}")

    def x265_parameters(self, setting: float, options: dict) -> dict:
        if not 0 <= int(setting) <= 51:
            raise InrError(f"HEVC QP must be in 0..51, got {setting}")
        return {"preset": options["preset"], "tune": "ssim", "x265:qp": str(int(setting)), "x265:aq-mode": "2",
                "x265:psy-rd": "0", "x265:psy-rdoq": "0",
                # no thread pool: x265 encodes in the calling thread. Deterministic, and on a busy machine
                # 6x faster in wall time than one pool thread (0.54 s CPU each way; the hand-offs between
                # threads wait for time slices: 7 s vs 43 s wall for kodim01 at load 13, measured)
                "x265:pools": "none", "x265:frame-threads": "1"}

    def encode(self, image, setting, options):
        import pillow_heif

        height, width, channels = image.shape
        heif = pillow_heif.from_bytes(mode="L" if channels == 1 else "RGB", size=(width, height),
                                      data=np.ascontiguousarray(image).tobytes())
        buffer = io.BytesIO()
        # quality is ignored under constant QP (x265:qp); it is given because libheif wants one
        heif.save(buffer, quality=50, chroma=self.chroma, enc_params=self.x265_parameters(setting, options))
        return buffer.getvalue()

    def decode(self, data, channels):
        import pillow_heif

        threads = pillow_heif.options.DECODE_THREADS
        pillow_heif.options.DECODE_THREADS = 1  # libde265 in this thread (as the encoder; same pixels)
        try:
            array = np.asarray(pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True), dtype=np.uint8)
        finally:
            pillow_heif.options.DECODE_THREADS = threads
        if array.ndim == 2:
            array = array[:, :, None]
        if channels == 1 and array.shape[2] == 3:
            array = array[:, :, :1]
        return array

    def describe(self, options):
        chroma = {444: "4:4:4", 420: "4:2:0"}[self.chroma]
        return {"preset": options["preset"], "chroma": chroma, "tune": "ssim", "rate_control": "constant QP",
                "aq-mode": 2, "psy-rd": 0, "psy-rdoq": 0, "container": "HEIF (whole file counted)"}

    def details(self, data, pixels):
        return {"bpp_picture": 8.0 * heif_picture_bytes(data) / pixels}


@register_codec
class Hevc444(Hevc):
    name, label, chroma = "hevc444", "HEVC 4:4:4 (x265)", 444


@register_codec
class Hevc420(Hevc):
    name, label, chroma = "hevc420", "HEVC 4:2:0 (x265)", 420


# ------------------------------------------------------------------------------------------------
# Measuring: one image at one setting, and a sweep over images and settings


def measure_setting(codec: str | ImageCodec, image: np.ndarray, setting: float, options: dict | None = None,
                    with_ms_ssim: bool = True, keep_decoded: bool = False) -> dict:
    """Encode, decode and measure one uint8 (H, W, C) image at one setting: bytes, bpp, mse, psnr
    (dB), ms_ssim, times (s), the codec's details; the decoded image under "decoded" if asked."""
    from inrcompress.evaluate.metrics import ms_ssim, mse, psnr_from_mse

    codec = get_codec(codec) if isinstance(codec, str) else codec
    options = codec.resolve_options(options)
    started = time.perf_counter()
    data = codec.encode(image, setting, options)
    encoded = time.perf_counter()
    decoded = codec.decode(data, image.shape[2])
    decode_seconds = time.perf_counter() - encoded
    if decoded.shape != image.shape:
        raise InrError(f"{codec.name}: decoded image is {decoded.shape}, the original {image.shape}")
    pred, target = decoded.astype(np.float64) / 255.0, image.astype(np.float64) / 255.0
    error = mse(pred, target)
    pixels = image.shape[0] * image.shape[1]
    row = {"bytes": len(data), "bpp": 8.0 * len(data) / pixels, "mse": error, "psnr": psnr_from_mse(error),
           "encoding_time": encoded - started, "decoding_time": decode_seconds, **codec.details(data, pixels)}
    if with_ms_ssim:
        row["ms_ssim"], row["ms_ssim_scales"] = ms_ssim(pred, target)
    if keep_decoded:
        row["decoded"] = decoded
    return row


def load_dataset_images(folder: Path, downscaling_factor: int = 1, names: Sequence[str] | None = None
                        ) -> list[tuple[str, np.ndarray]]:
    """(stem, uint8 image) of every image of a dataset folder, downscaled as the fitting tools do."""
    from inrcompress.signals.image import list_images, load_image

    files = list_images(folder)
    if names:
        wanted = [Path(n).stem for n in names]
        by_stem = {p.stem: p for p in files}
        missing = [n for n in wanted if n not in by_stem]
        if missing:
            raise InrError(f"not in {folder}: {', '.join(missing)}")
        files = [by_stem[n] for n in wanted]
    return [(p.stem, load_image(p, downscaling_factor)) for p in files]


def codec_sweep(codec: str | ImageCodec, images: Sequence[tuple[str, np.ndarray]],
                settings: Sequence[float] | None = None, options: dict | None = None, *, with_ms_ssim: bool = True,
                dataset: str = "", progress: bool = False) -> dict:
    """One codec over a sweep of settings on every image: a CompressAI-style curve JSON (sorted by
    bpp) with the per-image numbers and the options to encode any point again."""
    codec = get_codec(codec) if isinstance(codec, str) else codec
    reason = codec.missing()
    if reason:
        raise InrError(reason)
    if not images:
        raise InrError("no images")
    options = codec.resolve_options(options)
    settings = [codec.setting_type(s) for s in (settings if settings else codec.defaults)]
    import torch
    from tqdm.auto import tqdm

    rows: dict[str, list[dict]] = {name: [] for name, _ in images}
    bar = tqdm(total=len(settings) * len(images), desc=codec.label, unit="img", disable=not progress, leave=False)
    threads = torch.get_num_threads()
    # MS-SSIM's small float64 convolutions: one thread is several times faster than two on a busy
    # 2-core machine (1.8 s vs 0.04 s for a 192x128 image, measured), and never much slower.
    torch.set_num_threads(1)
    try:
        for setting in settings:
            for name, image in images:
                rows[name].append(measure_setting(codec, image, setting, options, with_ms_ssim))
                bar.update(1)
    finally:
        torch.set_num_threads(threads)
        bar.close()

    def column(key):
        return np.array([[rows[name][i][key] for i in range(len(settings))] for name, _ in images], dtype=float)

    first = rows[images[0][0]][0]
    extra = [key for key in first if key.startswith("bpp_")]
    results = {
        codec.setting: [float(s) for s in settings],
        "bpp": column("bpp").mean(axis=0).tolist(),
        "psnr-rgb": column("psnr").mean(axis=0).tolist(),
        "ms-ssim-rgb": column("ms_ssim").mean(axis=0).tolist() if with_ms_ssim else None,
        "psnr-of-mean-mse": [10 * math.log10(1 / m) for m in column("mse").mean(axis=0)],
        "encoding_time": column("encoding_time").mean(axis=0).tolist(),
        "decoding_time": column("decoding_time").mean(axis=0).tolist(),
        **{key: column(key).mean(axis=0).tolist() for key in extra},
    }
    order = np.argsort(results["bpp"], kind="stable")
    results = {k: ([v[i] for i in order] if v is not None else None) for k, v in results.items()}
    per_image = {name: {key: [rows[name][i][key] for i in order]
                        for key in ("bytes", "bpp", "psnr", "ms_ssim", *extra) if key in first} for name, _ in images}
    described = codec.describe(options)
    shapes = sorted({f"{im.shape[1]}x{im.shape[0]}" for _, im in images})
    scales = sorted({r.get("ms_ssim_scales") for name in rows for r in rows[name] if "ms_ssim_scales" in r})
    description = (f"{codec.label} ({codec.version()}; {', '.join(f'{k}={v}' for k, v in described.items())}), "
                   f"{codec.setting} sweep on {len(images)} images{f' of {dataset}' if dataset else ''} "
                   f"({', '.join(shapes)}); bpp from the encoded bytes, PSNR and MS-SSIM on the decoded 8-bit "
                   "images, averaged per image")
    if scales and scales != [5]:
        description += f"; MS-SSIM with {'/'.join(map(str, scales))} scales (small images)"
    return {"name": codec.label, "description": description, "codec": codec.name, "settings": described,
            "options": options, "version": codec.version(), "dataset": dataset,
            "images": [name for name, _ in images], "results": results, "per_image": per_image}
