"""Rate-distortion evaluation: curves of our experiments, classical codecs, BD-rate, plots.

Curves are JSON files in CompressAI's layout, {"name", "description", "results": {"bpp": [...],
"psnr-rgb": [...], "ms-ssim-rgb": [...], ...}}, sorted by bpp. `load_curve` also reads the anchor
layout of ../shared/anchors ({"name", "bpp", "psnr", "ms_ssim"?}), the paper's results files
({"results": {"bpp", "psnr"}}) and our per-experiment results_{code}_{cfg}.json (one point).

Conventions, the same for our experiments and the codecs (and CompressAI's published curves):
bpp = 8 x bytes of the file / pixels of the image; PSNR (RGB, peak 255) and MS-SSIM are measured on
the decoded 8-bit image against the original and averaged per image; each point of a codec curve is
one setting (quality or target rate) applied to every image. `psnr-of-mean-mse` (PSNR of the MSE
averaged over the images) is recorded beside it for comparisons with papers that use it.

BD-rate / BD-PSNR: Bjontegaard's classic method. For each curve a cubic polynomial (degree
min(3, points - 1)) is fitted to log10(bpp) as a function of PSNR (BD-rate) or PSNR as a function of
log10(bpp) (BD-PSNR); the difference of the two integrals over the range both curves cover, divided
by its width, is the mean log-rate (or PSNR) difference. BD-rate = 10^difference - 1, in percent:
negative means the test curve needs less rate than the anchor for the same quality.
"""

from __future__ import annotations

import glob as globlib
import io
import json
import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from inrcompress.errors import InrError

# ------------------------------------------------------------------------------------------------
# Curves


@dataclass
class Curve:
    """One rate-distortion curve, points sorted by bpp."""

    name: str
    bpp: list[float]
    psnr: list[float]
    ms_ssim: list[float] | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        order = np.argsort(np.asarray(self.bpp, dtype=float), kind="stable")
        self.bpp = [float(self.bpp[i]) for i in order]
        self.psnr = [float(self.psnr[i]) for i in order]
        if self.ms_ssim is not None:
            self.ms_ssim = [float(self.ms_ssim[i]) if self.ms_ssim[i] is not None else math.nan for i in order]

    def __len__(self) -> int:
        return len(self.bpp)

    def metric(self, name: str) -> np.ndarray:
        """psnr (dB), ms-ssim (0..1) or ms-ssim-db (-10 log10(1 - MS-SSIM))."""
        if name == "psnr":
            return np.asarray(self.psnr, dtype=float)
        if self.ms_ssim is None:
            raise InrError(f"curve {self.name!r} ({self.source}) has no MS-SSIM values")
        values = np.asarray(self.ms_ssim, dtype=float)
        if name == "ms-ssim":
            return values
        if name == "ms-ssim-db":
            return -10.0 * np.log10(np.clip(1.0 - values, 1e-12, None))
        raise InrError(f"unknown metric {name!r} (psnr, ms-ssim, ms-ssim-db)")


def _as_list(value) -> list | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return [value]
    return list(value)


def curve_from_dict(data: dict, source: str = "") -> Curve:
    """A Curve from any of the layouts described in the module docstring."""
    if not isinstance(data, dict):
        raise InrError(f"{source}: not a JSON object")
    table = data.get("results") if isinstance(data.get("results"), dict) else data
    bpp = _as_list(table.get("bpp"))
    psnr = _as_list(table.get("psnr-rgb", table.get("psnr")))
    ms_ssim = _as_list(table.get("ms-ssim-rgb", table.get("ms-ssim", table.get("ms_ssim"))))
    if not bpp or not psnr:
        raise InrError(f"{source}: no bpp/psnr values (not an RD curve)")
    if len(bpp) != len(psnr) or (ms_ssim is not None and len(ms_ssim) != len(bpp)):
        raise InrError(f"{source}: bpp, psnr and ms-ssim have different lengths")
    if any(v is None or not math.isfinite(float(v)) for v in bpp + psnr):
        raise InrError(f"{source}: a bpp or PSNR value is missing or not finite")
    if min(float(v) for v in bpp) <= 0:
        raise InrError(f"{source}: bpp must be positive")
    if ms_ssim is not None and all(v is None for v in ms_ssim):
        ms_ssim = None
    name = str(data.get("name") or Path(source).stem or "curve")
    extra = {k: v for k, v in data.items() if k not in ("results", "bpp", "psnr", "ms_ssim", "name")}
    return Curve(name, bpp, psnr, ms_ssim, source, extra)


def load_json(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InrError(f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InrError(f"cannot read {path}: {e}") from None


def load_curve(path: str | Path) -> Curve:
    return curve_from_dict(load_json(path), str(path))


def expand_paths(patterns: Iterable[str], *, folder_glob: str = "*.json", what: str = "file") -> list[Path]:
    """Files named by paths, globs (quoted, so the shell left them) or folders (their *.json, without
    the _-prefixed ones), in order, without repeats."""
    out: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found = sorted(p for p in path.glob(folder_glob) if p.is_file() and not p.name.startswith("_"))
        elif any(ch in pattern for ch in "*?["):
            found = sorted(Path(p) for p in globlib.glob(pattern, recursive=True) if Path(p).is_file())
        else:
            if not path.is_file():
                raise InrError(f"{what} not found: {pattern}")
            found = [path]
        if not found:
            raise InrError(f"no {what} matches {pattern}")
        out.extend(p for p in found if p not in out)
    return out


# ------------------------------------------------------------------------------------------------
# (a) aggregate our experiments

RESULT_KEYS = ("bpp", "bpp_payload", "psnr-rgb", "ms-ssim-rgb", "ssim", "encoding_time", "decoding_time")
_RESULTS_NAME = re.compile(r"^results_(?P<tag>.+)\.json$")


def is_experiment_results(data: dict) -> bool:
    """Our per-experiment results_{code}_{cfg}.json: one point (scalars in "results") + per_image."""
    results = data.get("results") if isinstance(data, dict) else None
    return isinstance(results, dict) and isinstance(results.get("bpp"), (int, float)) and "per_image" in data


def aggregate_results(paths: Sequence[str | Path], name: str | None = None,
                      allow_different_images: bool = False) -> dict:
    """One CompressAI-style curve from several experiments' results_{code}_{cfg}.json (one point
    each), sorted by bpp. Every point must average the same images unless allow_different_images."""
    if not paths:
        raise InrError("no results files to aggregate")
    points = []
    for path in paths:
        data = load_json(path)
        if not is_experiment_results(data):
            raise InrError(f"{path}: not a results_*.json of quantize_and_test.py (one experiment, per_image)")
        images = sorted(data["per_image"])
        if not images:
            raise InrError(f"{path}: no image was compressed")
        points.append((Path(path), data, images))
    tags = sorted({m.group("tag") if (m := _RESULTS_NAME.match(p.name)) else p.name for p, _, _ in points})
    if len(tags) > 1:
        raise InrError(f"the files hold {len(tags)} different settings ({', '.join(tags[:3])}"
                       f"{', ...' if len(tags) > 3 else ''}); one curve is one setting: select its files, e.g. "
                       f"'<exp_root>/*/results_{tags[0]}.json'")
    image_sets = {tuple(images) for _, _, images in points}
    if len(image_sets) > 1 and not allow_different_images:
        counts = ", ".join(f"{p.parent.name}: {len(images)}" for p, _, images in points)
        raise InrError(f"the experiments were compressed on different images ({counts}); their points would "
                       "average different images (pass --allow_different_images to aggregate anyway)")
    points.sort(key=lambda item: item[1]["results"]["bpp"])
    results: dict[str, list] = {key: [d["results"].get(key) for _, d, _ in points] for key in RESULT_KEYS}
    n_images = sorted({len(images) for _, _, images in points})
    return {
        "name": name or f"ours {short_tag(tags[0])}",
        "description": f"{len(points)} experiments ({', '.join(tags) or 'results files'}); "
                       f"{'/'.join(map(str, n_images))} images each; bpp from the .inr files, metrics on the "
                       "decoded 8-bit images, averaged per image",
        "results": results,
        "experiments": [p.parent.name for p, _, _ in points],
        "files": [str(p) for p, _, _ in points],
        "images": points[0][2] if len(image_sets) == 1 else None,
    }


def curves_from_files(paths: Sequence[str | Path]) -> list[Curve]:
    """Curves from files: per-experiment results_{tag}.json files are grouped by their tag (coder
    and quantization setting) and aggregated into one curve per tag; other files are curves."""
    groups: dict[str, list[Path]] = {}
    curves: list[Curve] = []
    for path in map(Path, paths):
        data = load_json(path)
        if is_experiment_results(data):
            match = _RESULTS_NAME.match(path.name)
            groups.setdefault(match.group("tag") if match else path.name, []).append(path)
        else:
            curves.append(curve_from_dict(data, str(path)))
    for tag, members in groups.items():
        prefix = "_".join(_common_prefix([p.parent.name for p in members]).split("_")[:2])
        label = f"ours {short_tag(tag)}" + (f" ({prefix})" if prefix else "")
        curves.insert(0, curve_from_dict(aggregate_results(members, name=label, allow_different_images=True),
                                         f"{len(members)} x results_{tag}.json"))
    return curves


def short_tag(tag: str) -> str:
    """'arithmetic_bw8_adaround_iter_1000_adaround_reg_0.0001_retrain_epochs300_retrain_lr1e-06' ->
    '8 bit, AdaRound+QAT, arithmetic'."""
    match = re.match(r"^(?P<code>[a-z]+)_bw(?P<bw>\d+)(?P<rest>.*)$", tag)
    if not match:
        return tag
    steps = [name for key, name in (("adaround", "AdaRound"), ("retrain", "QAT")) if key in match.group("rest")]
    return f"{match.group('bw')} bit, {'+'.join(steps) or 'nearest'}, {match.group('code')}"


def _common_prefix(names: list[str]) -> str:
    if len(names) < 2:
        return names[0].split("_")[0] if names else ""
    prefix = names[0]
    for other in names[1:]:
        while not other.startswith(prefix):
            prefix = prefix[:-1]
    return prefix.rsplit("_", 1)[0] + "_" if "_" in prefix else prefix


# ------------------------------------------------------------------------------------------------
# (b) classical codecs through Pillow

@dataclass(frozen=True)
class CodecSpec:
    name: str  # key: jpeg, jpeg2000, webp, avif
    label: str
    setting: str  # what the sweep varies
    defaults: tuple
    feature: str  # PIL.features name


CODECS = {
    "jpeg": CodecSpec("jpeg", "JPEG", "quality", tuple(range(5, 100, 5)), "jpg"),
    "jpeg2000": CodecSpec("jpeg2000", "JPEG2000", "target_bpp",
                          (0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0, 1.25, 1.5,
                           2.0, 2.5, 3.0, 4.0), "jpg_2000"),
    "webp": CodecSpec("webp", "WebP", "quality", tuple(range(5, 100, 5)), "webp"),
    "avif": CodecSpec("avif", "AVIF", "quality", tuple(range(5, 100, 5)), "avif"),
}
SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


@dataclass(frozen=True)
class CodecOptions:
    jpeg_subsampling: str = "4:2:0"
    webp_method: int = 6
    avif_speed: int = 6
    avif_subsampling: str = "4:2:0"


def codec_version(codec: str) -> str:
    import PIL
    from PIL import features

    spec = CODECS[codec]
    try:
        library = features.version(spec.feature)
    except ValueError:
        library = None
    return f"Pillow {PIL.__version__}" + (f", {spec.feature} {library}" if library else "")


def codec_available(codec: str) -> bool:
    from PIL import features

    try:
        return bool(features.check(CODECS[codec].feature))
    except ValueError:
        return False


def _pil_image(image: np.ndarray):
    from PIL import Image

    return Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)


def encode_image(codec: str, image: np.ndarray, setting: float, options: CodecOptions = CodecOptions()) -> bytes:
    """The encoded bytes of a uint8 (H, W, C) image with one codec setting."""
    if codec not in CODECS:
        raise InrError(f"unknown codec {codec!r} ({', '.join(CODECS)})")
    picture = _pil_image(image)
    buffer = io.BytesIO()
    if codec == "jpeg":
        if options.jpeg_subsampling not in SUBSAMPLING:
            raise InrError(f"JPEG subsampling must be one of {', '.join(SUBSAMPLING)}")
        picture.save(buffer, format="JPEG", quality=int(setting),
                     subsampling=SUBSAMPLING[options.jpeg_subsampling] if image.shape[2] == 3 else -1)
    elif codec == "jpeg2000":
        # 9/7 wavelet (irreversible) and the colour transform (mct): the codec's lossy mode. The rate is
        # OpenJPEG's compression ratio to the raw 8-bit image; the raw codestream (no JP2 boxes).
        if setting <= 0:
            raise InrError("JPEG2000 target bpp must be positive")
        ratio = 8.0 * image.shape[2] / float(setting)
        levels = max(1, min(6, int(math.log2(min(image.shape[:2]))) + 1 - 2))
        picture.save(buffer, format="JPEG2000", irreversible=True, mct=1 if image.shape[2] == 3 else 0,
                     quality_mode="rates", quality_layers=[ratio], no_jp2=True, num_resolutions=levels)
    elif codec == "webp":
        picture.save(buffer, format="WEBP", quality=int(setting), method=int(options.webp_method))
    elif codec == "avif":
        picture.save(buffer, format="AVIF", quality=int(setting), speed=int(options.avif_speed),
                     subsampling=options.avif_subsampling)
    return buffer.getvalue()


def decode_image_bytes(data: bytes, channels: int) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        array = np.asarray(img.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def measure_setting(codec: str, image: np.ndarray, setting: float, options: CodecOptions = CodecOptions(),
                    with_ms_ssim: bool = True) -> dict:
    """Encode, decode and measure one image at one setting."""
    from inrcompress.evaluate.metrics import ms_ssim, mse, psnr_from_mse

    started = time.perf_counter()
    data = encode_image(codec, image, setting, options)
    encoded = time.perf_counter()
    decoded = decode_image_bytes(data, image.shape[2])
    decode_seconds = time.perf_counter() - encoded
    if decoded.shape != image.shape:
        raise InrError(f"{codec}: decoded image is {decoded.shape}, the original {image.shape}")
    pred, target = decoded.astype(np.float64) / 255.0, image.astype(np.float64) / 255.0
    error = mse(pred, target)
    row = {"bytes": len(data), "bpp": 8.0 * len(data) / (image.shape[0] * image.shape[1]), "mse": error,
           "psnr": psnr_from_mse(error), "encoding_time": encoded - started, "decoding_time": decode_seconds}
    if with_ms_ssim:
        row["ms_ssim"], row["ms_ssim_scales"] = ms_ssim(pred, target)
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


def codec_sweep(codec: str, images: Sequence[tuple[str, np.ndarray]], settings: Sequence[float] | None = None,
                options: CodecOptions = CodecOptions(), *, with_ms_ssim: bool = True, dataset: str = "",
                progress: bool = False) -> dict:
    """One codec over a sweep of settings on every image: a CompressAI-style curve JSON (sorted by
    bpp) with the per-image numbers."""
    if codec not in CODECS:
        raise InrError(f"unknown codec {codec!r} ({', '.join(CODECS)})")
    if not codec_available(codec):
        raise InrError(f"this Pillow has no {CODECS[codec].label} encoder ({codec_version(codec)})")
    if not images:
        raise InrError("no images")
    spec = CODECS[codec]
    settings = list(settings if settings else spec.defaults)
    import torch
    from tqdm.auto import tqdm

    rows: dict[str, list[dict]] = {name: [] for name, _ in images}
    bar = tqdm(total=len(settings) * len(images), desc=spec.label, unit="img", disable=not progress, leave=False)
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

    bpp, psnr, mse = column("bpp"), column("psnr"), column("mse")
    results = {
        spec.setting: [float(s) for s in settings],
        "bpp": bpp.mean(axis=0).tolist(),
        "psnr-rgb": psnr.mean(axis=0).tolist(),
        "ms-ssim-rgb": column("ms_ssim").mean(axis=0).tolist() if with_ms_ssim else None,
        "psnr-of-mean-mse": [10 * math.log10(1 / m) for m in mse.mean(axis=0)],
        "encoding_time": column("encoding_time").mean(axis=0).tolist(),
        "decoding_time": column("decoding_time").mean(axis=0).tolist(),
    }
    order = np.argsort(results["bpp"], kind="stable")
    results = {k: ([v[i] for i in order] if v is not None else None) for k, v in results.items()}
    per_image = {name: {key: [rows[name][i][key] for i in order] for key in ("bytes", "bpp", "psnr", "ms_ssim")
                        if key in rows[name][0]} for name, _ in images}
    opts = {"jpeg": {"subsampling": options.jpeg_subsampling},
            "jpeg2000": {"irreversible": True, "mct": 1, "quality_mode": "rates", "codestream": "j2k (no JP2 boxes)"},
            "webp": {"method": options.webp_method},
            "avif": {"speed": options.avif_speed, "subsampling": options.avif_subsampling}}[codec]
    shapes = sorted({f"{im.shape[1]}x{im.shape[0]}" for _, im in images})
    scales = sorted({r.get("ms_ssim_scales") for name in rows for r in rows[name] if "ms_ssim_scales" in r})
    description = (f"{spec.label} ({codec_version(codec)}; {', '.join(f'{k}={v}' for k, v in opts.items())}), "
                   f"{spec.setting} sweep on {len(images)} images{f' of {dataset}' if dataset else ''} "
                   f"({', '.join(shapes)}); bpp from the encoded bytes, PSNR and MS-SSIM on the decoded 8-bit "
                   "images, averaged per image")
    if scales and scales != [5]:
        description += f"; MS-SSIM with {'/'.join(map(str, scales))} scales (small images)"
    return {"name": spec.label, "description": description, "codec": codec, "settings": opts,
            "version": codec_version(codec), "dataset": dataset, "images": [name for name, _ in images],
            "results": results, "per_image": per_image}


# ------------------------------------------------------------------------------------------------
# (c) Bjontegaard metrics


def _clean(rate: Sequence[float], quality: Sequence[float], what: str) -> tuple[np.ndarray, np.ndarray]:
    rate = np.asarray(rate, dtype=float)
    quality = np.asarray(quality, dtype=float)
    keep = np.isfinite(rate) & np.isfinite(quality) & (rate > 0)
    rate, quality = rate[keep], quality[keep]
    if len(rate) < 2 or len(np.unique(quality)) < 2 or len(np.unique(rate)) < 2:
        raise InrError(f"{what}: a BD metric needs at least 2 distinct points, got {len(rate)}")
    return rate, quality


def _fit_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    degree = min(3, len(np.unique(x)) - 1)
    poly = np.polyfit(x, y, degree)
    integral = np.polyint(poly)
    return float(np.polyval(integral, hi) - np.polyval(integral, lo))


def bd_rate(anchor_rate: Sequence[float], anchor_quality: Sequence[float], test_rate: Sequence[float],
            test_quality: Sequence[float]) -> float:
    """Bjontegaard delta rate of test against anchor in percent (negative: test needs less rate)."""
    ar, aq = _clean(anchor_rate, anchor_quality, "anchor")
    tr, tq = _clean(test_rate, test_quality, "test")
    lo, hi = max(aq.min(), tq.min()), min(aq.max(), tq.max())
    if hi <= lo:
        raise InrError(f"the curves do not overlap in quality (anchor {aq.min():.2f}..{aq.max():.2f}, "
                       f"test {tq.min():.2f}..{tq.max():.2f})")
    diff = (_fit_integral(tq, np.log10(tr), lo, hi) - _fit_integral(aq, np.log10(ar), lo, hi)) / (hi - lo)
    return float((10.0 ** diff - 1.0) * 100.0)


def bd_psnr(anchor_rate: Sequence[float], anchor_quality: Sequence[float], test_rate: Sequence[float],
            test_quality: Sequence[float]) -> float:
    """Bjontegaard delta quality (dB for PSNR) of test against anchor (positive: test is better)."""
    ar, aq = _clean(anchor_rate, anchor_quality, "anchor")
    tr, tq = _clean(test_rate, test_quality, "test")
    la, lt = np.log10(ar), np.log10(tr)
    lo, hi = max(la.min(), lt.min()), min(la.max(), lt.max())
    if hi <= lo:
        raise InrError(f"the curves do not overlap in rate (anchor {ar.min():.3f}..{ar.max():.3f} bpp, "
                       f"test {tr.min():.3f}..{tr.max():.3f} bpp)")
    return float((_fit_integral(lt, tq, lo, hi) - _fit_integral(la, aq, lo, hi)) / (hi - lo))


def bd_compare(anchor: Curve, test: Curve, metric: str = "psnr") -> dict:
    """BD-rate and BD-quality of test vs anchor, with the overlapping ranges."""
    aq, tq = anchor.metric(metric), test.metric(metric)
    out = {"anchor": anchor.name, "test": test.name, "metric": metric}
    try:
        out["bd_rate"] = bd_rate(anchor.bpp, aq, test.bpp, tq)
    except InrError as e:
        out["bd_rate"], out["bd_rate_error"] = None, str(e)
    try:
        out["bd_quality"] = bd_psnr(anchor.bpp, aq, test.bpp, tq)
    except InrError as e:
        out["bd_quality"], out["bd_quality_error"] = None, str(e)
    finite_a, finite_t = np.isfinite(aq), np.isfinite(tq)
    out["quality_overlap"] = [float(max(aq[finite_a].min(), tq[finite_t].min())),
                              float(min(aq[finite_a].max(), tq[finite_t].max()))]
    out["bpp_overlap"] = [float(max(min(anchor.bpp), min(test.bpp))), float(min(max(anchor.bpp), max(test.bpp)))]
    return out


def format_bd(row: dict) -> str:
    unit = "dB" if row["metric"] in ("psnr", "ms-ssim-db") else ""
    head = f"{row['test']} vs {row['anchor']}: "
    if row.get("bd_rate") is None:
        return head + f"no BD-rate ({row.get('bd_rate_error', 'no overlap')})"
    quality = f"{row['bd_quality']:+.3f} {unit}".rstrip() if row.get("bd_quality") is not None else "n/a"
    lo, hi = row["quality_overlap"]
    return (head + f"BD-rate {row['bd_rate']:+.1f}%, BD-{row['metric']} {quality} "
            f"(over {lo:.2f}..{hi:.2f} {unit or row['metric']})")


# ------------------------------------------------------------------------------------------------
# (d) plots

STYLES = {"ours": {"linestyle": "-", "marker": "o", "linewidth": 2.0, "markersize": 5},
          "codec": {"linestyle": "--", "marker": "s", "linewidth": 1.4, "markersize": 3},
          "anchor": {"linestyle": ":", "marker": "^", "linewidth": 1.4, "markersize": 3}}


def plot_curves(groups: Sequence[tuple[str, Sequence[Curve]]], out: str | Path, *, metric: str = "psnr",
                title: str = "", max_bpp: float | None = None) -> Path:
    """RD plot (PNG) of curves grouped by kind (ours, codec, anchor); metric psnr, ms-ssim-db or both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ["psnr", "ms-ssim-db"] if metric == "both" else [metric]
    figure, axes = plt.subplots(1, len(metrics), figsize=(7.5 * len(metrics), 5.5), squeeze=False)
    labels = {"psnr": "PSNR (RGB) [dB]", "ms-ssim-db": "MS-SSIM [dB] = -10 log10(1 - MS-SSIM)",
              "ms-ssim": "MS-SSIM"}
    for axis, name in zip(axes[0], metrics):
        for kind, curves in groups:
            for curve in curves:
                try:
                    values = curve.metric(name)
                except InrError:
                    continue
                bpp = np.asarray(curve.bpp)
                keep = np.isfinite(values) & ((bpp <= max_bpp) if max_bpp else True)
                if not keep.any():
                    continue
                axis.plot(bpp[keep], values[keep], label=curve.name, **STYLES.get(kind, STYLES["anchor"]))
        axis.set_xlabel("bits per pixel")
        axis.set_ylabel(labels[name])
        axis.grid(True, alpha=0.3)
        if max_bpp:
            axis.set_xlim(0, max_bpp)
        axis.legend(fontsize=7, loc="lower right")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return out


def write_json(path: str | Path, data: dict) -> Path:
    from inrcompress.config import atomic_write_text
    from inrcompress.signals.download import make_readable

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2))
    make_readable(path)  # atomic_write_* leaves mkstemp's 0600
    return path


def progress_printer(enabled: bool) -> Callable[[str], None]:
    import sys

    return (lambda text: print(text, file=sys.stderr)) if enabled else (lambda text: None)
