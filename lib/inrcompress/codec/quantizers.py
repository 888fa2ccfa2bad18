"""The quantizers a QuantConfig can name (`--quantizer`): each turns N fitted networks of one
representation into one QuantizedTensors per network (integer symbols and float32 step sizes of the
representation's declared tensors), which the coder and the .inr writer take from there.

- "native": this toolkit's step search, AdaRound and quantization-aware retraining, batched over
  the networks (quant_batched.quantize_models; the default).
- "aimet": the paper's own quantizer, aimet-torch, one network at a time (aimet_quant; it needs
  the separate environment of `make setup-aimet`).

A new quantizer is one function registered here with @register_quantizer.
"""

from __future__ import annotations

from typing import Callable

from inrcompress.errors import InrError

QUANTIZERS: dict[str, Callable] = {}
# name -> a check run before any work: None when the quantizer can run here, else why not (one line).
_UNAVAILABLE: dict[str, Callable[[], str | None]] = {}


def register_quantizer(name: str, unavailable: Callable[[], str | None] | None = None):
    """Register fn(models, features, targets, qcfg, *, references, seeds, grid_shape, progress) under
    name; `unavailable()` (optional) says why it cannot run in this environment, or None."""
    def decorate(fn: Callable) -> Callable:
        if name in QUANTIZERS:
            raise ValueError(f"a quantizer named {name!r} is registered already")
        QUANTIZERS[name] = fn
        if unavailable is not None:
            _UNAVAILABLE[name] = unavailable
        return fn
    return decorate


def check_quantizer(name: str) -> None:
    """Raise InrError (one line) when `name` is unknown or cannot run in this environment."""
    if name not in QUANTIZERS:
        raise InrError(f"quantizer must be one of {', '.join(QUANTIZERS)}, got {name!r}")
    reason = _UNAVAILABLE[name]() if name in _UNAVAILABLE else None
    if reason:
        raise InrError(f"--quantizer {name}: {reason}")


def _aimet_missing() -> str | None:
    from inrcompress.codec.aimet_quant import AIMET_SETUP_HINT, aimet_available

    return None if aimet_available() else f"needs aimet-torch, which does not import here: {AIMET_SETUP_HINT}"


@register_quantizer("native")
def native(models, features, targets, qcfg, *, references, seeds, grid_shape, progress):
    from inrcompress.codec.quant_batched import quantize_models

    return quantize_models(models, features, targets, qcfg.bitwidth, adaround=qcfg.adaround,
                           adaround_iterations=qcfg.adaround_iterations, adaround_reg=qcfg.adaround_reg,
                           retrain=qcfg.retrain, retrain_epochs=qcfg.retrain_epochs, retrain_lr=qcfg.retrain_lr,
                           references=references, seeds=seeds, grid_shape=grid_shape, step_scale=qcfg.step_scale,
                           rd_steps=qcfg.rd_steps, qat_from_soft=qcfg.qat_from_soft,
                           per_channel_steps=qcfg.per_channel_steps, progress=progress)


@register_quantizer("aimet", unavailable=_aimet_missing)
def aimet(models, features, targets, qcfg, *, references, seeds, grid_shape, progress):
    from inrcompress.codec.aimet_quant import quantize_model_aimet

    del grid_shape  # AIMET sees plain rows
    n = len(models)
    per_model_features = features if isinstance(features, (list, tuple)) else [features] * n
    per_model_seeds = seeds if isinstance(seeds, (list, tuple)) else [seeds] * n
    per_model_refs = references if isinstance(references, (list, tuple)) else [references] * n
    return [quantize_model_aimet(m, f, t, qcfg.bitwidth, adaround=qcfg.adaround,
                                 adaround_iterations=qcfg.adaround_iterations, adaround_reg=qcfg.adaround_reg,
                                 retrain=qcfg.retrain, retrain_epochs=qcfg.retrain_epochs,
                                 retrain_lr=qcfg.retrain_lr, reference=r, seed=s, progress=progress)
            for m, f, t, r, s in zip(models, per_model_features, targets, per_model_refs, per_model_seeds)]
