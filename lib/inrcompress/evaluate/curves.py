"""Rate-distortion curves: reading them, and turning our experiments' results into curves.

Curves are JSON files in CompressAI's layout, {"name", "description", "results": {"bpp": [...],
"psnr-rgb": [...], "ms-ssim-rgb": [...], ...}}, sorted by bpp. `load_curve` also reads the anchor
layout of ../shared/anchors ({"name", "bpp", "psnr", "ms_ssim"?}), the paper's results files
({"results": {"bpp", "psnr"}}) and our per-experiment results_{code}_{cfg}.json (one point).

Conventions, the same for our experiments and the codecs (and CompressAI's published curves):
bpp = 8 x bytes of the file / pixels of the image; PSNR (RGB, peak 255) and MS-SSIM are measured on
the decoded 8-bit image against the original and averaged per image.
"""

from __future__ import annotations

import glob as globlib
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inrcompress.errors import InrError


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
# Our experiments: one curve from several results files

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
