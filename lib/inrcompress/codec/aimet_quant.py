"""AIMET (aimet-torch, Qualcomm) as the quantizer: the tool the paper ran, as an optional backend.

`quantize_model_aimet` has the signature and the result of codec.quant.quantize_model: the integers
(as symbols) and float32 step sizes of every tensor the model's representation declares, per-tensor
symmetric, so the result goes through the same coder, .inr file and decoder. It exists to run the
paper's own quantizer and to cross-check the native one (benchmarks/aimet_crosscheck.py).

aimet-torch is not a dependency of this package: it needs torch 2.14.1 + torchvision 0.29.1 and
lives in its own environment (`make setup-aimet` -> .venv-aimet, scripts/setup_aimet.sh). It is
imported only when this quantizer runs; without it the call is a one-line InrError naming that
command.

The pipeline, configured as the paper's Quantizer.py (spec 6.2-6.4):
- The representation's chain of linear layers (Representation.linear_layers) is rebuilt as a plain
  module (nn.Linear per layer, the activation as a module between them) that AIMET wraps; its input
  is the representation's `features`. A representation whose declared tensors are not all weights
  and biases of that chain is refused.
- QuantizationSimModel with QuantScheme.post_training_tf_enhanced, default_param_bw = bitwidth, a
  config that quantizes every weight AND bias per tensor, symmetric (signed grid, not strict, not
  unsigned: integers in [-2^(b-1), 2^(b-1) - 1], the grid of our file format), and no input or
  output (activation) quantizer: parameters only. The activation module is left unquantized
  (`QuantizationMixin.ignore`), as the paper excluded its Sine wrappers. compute_encodings runs a
  forward pass over the signal's features. An all-zero bias keeps no quantizer (the paper left such
  a bias's quantizer disabled) and is coded as integers 0 with step 1.0.
- AdaRound: aimet_torch.adaround.Adaround on the sim (its `_apply_adaround`, the body of
  `apply_adaround` after the sim is built, so that the sim is ours), iterations and regularisation
  from the flags, beta (20, 2), warm start 0.2, with the whole signal as ONE batch of shape
  (1, rows, features), as the paper fed it (AIMET's 32-row sampling along dim 0 then picks that single
  item: every iteration sees every row). Stock AIMET finds the activation after a layer only among
  torch's own activation modules, so the layer -> activation map is handed to it from
  linear_layers (the reconstruction loss then includes sin(30 z), AIMET's default for a known
  activation, as in codec/quant.py). AdaRound returns soft-rounded weights and writes the weight
  encodings; a NEW sim is built on those weights with the weight encodings loaded and frozen and the
  bias encodings recomputed (as the paper did); its nearest rounding of the soft weights is AdaRound's
  hard rounding.
- QAT through sim.model: Adam at retrain_lr over the layers' weights and biases (the quantizers'
  own ranges frozen, so the step sizes stay those of compute_encodings / AdaRound), retrain_epochs
  full-signal MSE steps (row chunks accumulate gradients), AIMET's straight-through estimator; every
  state, the starting one included, is evaluated through the sim and the lowest-MSE one is kept.
- Read-out: per quantizer, scale (float32) is the step and q = clamp(round(w / scale), qmin, qmax)
  computed as AIMET does (float32 division, ties to even); dequantize(q, step) (codec.quant) then
  equals the sim's quantize-dequantize of w exactly (tests/test_aimet.py checks it).

Residual ("reference") mode as in the paper's RefLinear: each layer is a trainable nn.Linear holding
theta - theta_0 plus a frozen nn.Linear holding theta_0, excluded from quantization. Stock AIMET
AdaRound then reconstructs the residual layer's own output, without the offset and the activation
(the paper had patched AIMET to add both); this is a known difference to the paper in that mode.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from inrcompress.codec.quant import (
    CHUNK_ROWS,
    QuantizedTensors,
    _check_bitwidth,
    _declared,
    _flatten_rows,
    _parameter_tensors,
    _progress,
    _reference_tensors,
    integer_range,
    symbols_from_integers,
)
from inrcompress.errors import InrError

AIMET_SETUP_HINT = "run `make setup-aimet` and use .venv-aimet/bin/python"

# The paper's QuantizationSimModel configuration (spec 6.2) in AIMET's config-file schema: weights
# and biases, per tensor, signed symmetric. AIMET refuses "is_output_quantized": "False" as a default,
# nor an unquantized model input, so those quantizers are created here and removed from every
# wrapper after (_make_sim): parameters only.
AIMET_CONFIG = {
    "defaults": {
        "ops": {"is_output_quantized": "True"},
        "params": {"is_quantized": "True", "is_symmetric": "True"},
        "strict_symmetric": "False",
        "unsigned_symmetric": "False",
        "per_channel_quantization": "False",
    },
    "params": {"bias": {"is_quantized": "True"}},
    "op_type": {},
    "supergroups": [],
    "model_input": {"is_input_quantized": "True"},
    "model_output": {},
}
ADAROUND_BETA_RANGE = (20.0, 2.0)
ADAROUND_WARM_START = 0.2


def _aimet():
    """The aimet_torch modules this backend uses; InrError naming the set-up command without them."""
    try:
        import aimet_torch  # noqa: F401
        from aimet_torch.adaround import Adaround, AdaroundParameters
        from aimet_torch.common.defs import QuantScheme
        from aimet_torch.nn import QuantizationMixin
        from aimet_torch.quantsim import QuantizationSimModel
    except Exception as exc:  # ImportError, or a torch/torchvision clash raised while importing
        raise InrError(f"the aimet quantizer needs aimet-torch, which does not import here "
                       f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                       f"{AIMET_SETUP_HINT}") from None
    return {"Adaround": Adaround, "AdaroundParameters": AdaroundParameters, "QuantScheme": QuantScheme,
            "QuantizationMixin": QuantizationMixin, "QuantizationSimModel": QuantizationSimModel}


def aimet_available() -> bool:
    """True when aimet-torch imports in this environment."""
    try:
        _aimet()
    except InrError:
        return False
    return True


# --------------------------------------------------------------------------------------------------
# The module AIMET sees


class LayerActivation(nn.Module):
    """A representation's activation (a callable) as a module, so AIMET can pair it with its layer."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class OffsetLinear(nn.Module):
    """The paper's RefLinear: linear (quantized, theta - theta_0) plus offset (frozen theta_0)."""

    def __init__(self, linear: nn.Linear, offset: nn.Linear):
        super().__init__()
        self.linear = linear
        self.offset = offset.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.offset(x)


class LinearChain(nn.Module):
    """activation_k(... activation_0(x W0^T + b0) ...) over layers[k]; activations[k] None: linear.
    `quantized` lists the nn.Linear whose weight and bias are the declared tensors, in file order."""

    def __init__(self, layers: Sequence[nn.Module], activations: Sequence[LayerActivation | None]):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.activations = nn.ModuleList(a if a is not None else nn.Identity() for a in activations)
        self.has_activation = [a is not None for a in activations]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer, act, use in zip(self.layers, self.activations, self.has_activation):
            x = layer(x)
            if use:
                x = act(x)
        return x

    def quantized_names(self) -> list[str]:
        """Module names (in self) of the quantized nn.Linear, in file order."""
        return [f"layers.{i}.linear" if isinstance(m, OffsetLinear) else f"layers.{i}"
                for i, m in enumerate(self.layers)]


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    return layer


def build_chain(model: nn.Module, reference=None) -> LinearChain:
    """The representation's linear layers as a LinearChain of copies of the model's tensors (the
    model is not modified); with a reference, OffsetLinear layers holding theta - theta_0."""
    rep, tensors = _declared(model)
    layers = rep.linear_layers()
    if not layers:
        raise InrError(f"the aimet quantizer needs a chain of linear layers; the {rep.name} representation "
                       "has none")
    covered = sorted(i for layer in layers for i in (layer.weight, layer.bias))
    if covered != list(range(len(tensors))):
        raise InrError(f"the aimet quantizer quantizes linear layers only; the {rep.name} representation declares "
                       "tensors outside them")
    thetas = _parameter_tensors(tensors)
    refs = _reference_tensors(rep, tensors, reference)
    modules, activations = [], []
    for layer in layers:
        linear = _linear(thetas[layer.weight] - refs[layer.weight], thetas[layer.bias] - refs[layer.bias])
        if reference is not None:
            linear = OffsetLinear(linear, _linear(refs[layer.weight], refs[layer.bias]))
        modules.append(linear)
        activations.append(None if layer.activation is None else LayerActivation(layer.activation))
    return LinearChain(modules, activations).to(thetas[0].device)


# --------------------------------------------------------------------------------------------------
# Sim helpers


@contextlib.contextmanager
def _quiet_aimet(enabled: bool):
    """AIMET logs every layer at INFO and torch.jit warns on its graph tracing; keep that to real
    warnings unless progress is wanted."""
    if enabled:
        yield
        return
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
               if name.split(".")[0] in ("Quant", "Utils", "ConnectedGraph", "aimet_torch", "aimet_common")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
        warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True to a scalar")
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def _quantized_modules(sim, chain: LinearChain) -> list[nn.Module]:
    """The sim's quantized nn.Linear wrappers, in file order."""
    return [sim.model.get_submodule(name) for name in chain.quantized_names()]


def _make_sim(aimet, chain: LinearChain, features: torch.Tensor, bitwidth: int, config_path: str):
    """A parameters-only, per-tensor symmetric sim of `chain` (AIMET_CONFIG) with the offsets of
    residual layers and the all-zero biases left unquantized; no encodings computed yet."""
    sim = aimet["QuantizationSimModel"](chain, dummy_input=features[:1],
                                        quant_scheme=aimet["QuantScheme"].post_training_tf_enhanced,
                                        default_param_bw=bitwidth, config_file=config_path)
    offsets = [m.offset for m in sim.model.layers if isinstance(m, OffsetLinear)]
    if offsets:
        sim.exclude_layers_from_quantization(offsets)
    for module in _quantized_modules(sim, chain):
        module.input_quantizers = nn.ModuleList([None for _ in module.input_quantizers])
        module.output_quantizers = nn.ModuleList([None for _ in module.output_quantizers])
        if not bool(torch.any(module.bias != 0)):
            module.param_quantizers["bias"] = None
        for quantizer in module.param_quantizers.values():
            if quantizer is not None and (quantizer.bitwidth != bitwidth or not quantizer.symmetric
                                          or not quantizer.signed):
                raise InrError("the AIMET sim is not configured as per-tensor signed symmetric at "
                               f"{bitwidth} bits: {quantizer}")
    return sim


def _forward_rows(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[s:s + CHUNK_ROWS]) for s in range(0, x.shape[0], CHUNK_ROWS)], dim=0)


def _sim_mse(sim, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(torch.mean((_forward_rows(sim.model, x) - y) ** 2))


@dataclass
class SimReadout:
    """A sim's state as our file codes it: integers and float32 steps per declared tensor (W0, b0,
    W1, ...); `sim_values`, what the sim itself computes for each tensor (its quantize-dequantize,
    float32 on the CPU), which dequantize(ints[k], steps[k]) must equal; `mse`, the sim's mean
    squared error on the signal in that state (what this quantizer reports)."""

    ints: list[torch.Tensor]
    steps: list[float]
    sim_values: list[torch.Tensor]
    mse: float

    def quantized(self, bitwidth: int) -> QuantizedTensors:
        """The QuantizedTensors of this state (what the coder takes)."""
        return QuantizedTensors(bitwidth=int(bitwidth), symbols=[symbols_from_integers(q, bitwidth) for q in self.ints],
                                step_sizes=list(self.steps), shapes=[tuple(int(d) for d in q.shape) for q in self.ints])


def _readout(sim, chain: LinearChain, bitwidth: int, mse: float) -> SimReadout:
    """Integers and steps of every declared tensor as the sim quantizes them (mse: the sim's)."""
    qmin, qmax = integer_range(bitwidth)
    ints, steps, sim_values = [], [], []
    for module in _quantized_modules(sim, chain):
        for name in ("weight", "bias"):
            value = getattr(module, name).detach().to(torch.float32)
            quantizer = module.param_quantizers[name]
            if quantizer is None:  # an all-zero bias
                ints.append(torch.zeros(value.shape, dtype=torch.int32))
                steps.append(1.0)
                sim_values.append(value.cpu().clone())
                continue
            scale = quantizer.get_scale().detach().to(torch.float32).reshape(-1)
            offset = quantizer.get_offset().detach().reshape(-1)
            if scale.numel() != 1 or offset.numel() != 1 or float(offset[0]) != 0.0:
                raise InrError(f"AIMET's {name} encoding is not per-tensor symmetric (scale {scale.tolist()}, "
                               f"offset {offset.tolist()})")
            step = np.float32(scale[0].item())
            if not (np.isfinite(step) and step > 0):
                raise InrError(f"AIMET chose the step {step!r} for a {name}")
            q = torch.round(value / scale[0]).clamp_(qmin, qmax)  # float32 division, as AIMET's kernel
            ints.append(q.to(torch.int32).cpu())
            steps.append(float(step))
            with torch.no_grad():
                sim_values.append(quantizer(value).as_subclass(torch.Tensor).detach().cpu().clone())
    return SimReadout(ints, steps, sim_values, mse)


def _freeze_quantizers(sim) -> None:
    for name, param in sim.model.named_parameters():
        if "quantizer" in name:
            param.requires_grad_(False)


# --------------------------------------------------------------------------------------------------
# AdaRound and QAT through AIMET


@contextlib.contextmanager
def _activation_pairs(chain: LinearChain):
    """Hand AIMET's AdaRound the layer -> following activation map of the chain: its graph search
    knows only torch's activation classes, so it would pair our activation with nothing."""
    from aimet_torch._base.adaround import adaround_weight

    pairs = {}
    for layer, act, use in zip(chain.layers, chain.activations, chain.has_activation):
        if isinstance(layer, OffsetLinear):
            pairs[layer.linear] = None  # followed by the offset's add, not by the activation
            pairs[layer.offset] = None
        else:
            pairs[layer] = act if use else None
    original = adaround_weight.connectedgraph_utils.get_module_act_func_pair

    def paired(model, model_input):
        found = original(model, model_input)
        found.update(pairs)
        return found

    adaround_weight.connectedgraph_utils.get_module_act_func_pair = paired
    try:
        yield
    finally:
        adaround_weight.connectedgraph_utils.get_module_act_func_pair = original


def _adaround(aimet, sim, chain: LinearChain, features: torch.Tensor, bitwidth: int, iterations: int, reg: float,
              config_path: str, workdir: str):
    """AIMET AdaRound on `sim` (consumed); returns a new sim on the soft-rounded weights with the
    AdaRound weight encodings frozen and the bias encodings recomputed."""
    batch = features[None]  # the whole signal as one item, as the paper's data loader gave it
    params = aimet["AdaroundParameters"](data_loader=[batch], num_batches=1, default_num_iterations=iterations,
                                         default_reg_param=reg, default_beta_range=ADAROUND_BETA_RANGE,
                                         default_warm_start=ADAROUND_WARM_START,
                                         forward_fn=lambda model, inputs: model(inputs))
    with _activation_pairs(chain):
        rounded = aimet["Adaround"]._apply_adaround(sim, chain, features[:1], params, path=workdir,
                                                    filename_prefix="adaround")
    # `rounded` holds modules of `chain` itself; give the new sim its own chain of those weights
    soft = LinearChain([layer for layer in rounded.layers],
                       [act if use else None for act, use in zip(rounded.activations, rounded.has_activation)])
    new_sim = _make_sim(aimet, soft, features, bitwidth, config_path)
    new_sim.set_and_freeze_param_encodings(os.path.join(workdir, "adaround.encodings"))
    new_sim.compute_encodings(lambda model, _: _forward_rows(model, features), None)
    return new_sim, soft


def _retrain(sim, chain: LinearChain, bitwidth: int, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float,
             progress: bool) -> SimReadout:
    """QAT through sim.model; the read-out of the lowest-MSE state (the initial one included)."""
    _freeze_quantizers(sim)
    modules = _quantized_modules(sim, chain)
    params = [p for m in modules for p in (m.weight, m.bias)]
    optimizer = torch.optim.Adam(params, lr=lr)
    n_values = y.numel()
    best_mse, best = math.inf, None
    sim.model.train()
    for t in _progress(range(epochs + 1), progress, desc="QAT (AIMET)", leave=False):
        train = t < epochs
        if train:
            optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for start in range(0, x.shape[0], CHUNK_ROWS):
            with torch.set_grad_enabled(train):
                sse = torch.sum((sim.model(x[start:start + CHUNK_ROWS]) - y[start:start + CHUNK_ROWS]) ** 2)
                if train:
                    (sse / n_values).backward()
            total += float(sse.detach())
        mse = total / n_values
        if mse < best_mse:
            best_mse, best = mse, _readout(sim, chain, bitwidth, mse)
        if train:
            optimizer.step()
    sim.model.eval()
    return best


# --------------------------------------------------------------------------------------------------
# Public entry point


def quantize_model_aimet(model: nn.Module, features: torch.Tensor, targets: torch.Tensor, bitwidth: int, *,
                         adaround: bool = True, adaround_iterations: int = 1000, adaround_reg: float = 1e-4,
                         retrain: bool = True, retrain_epochs: int = 300, retrain_lr: float = 1e-6,
                         reference=None, seed: int = 0, progress: bool = False) -> QuantizedTensors:
    """codec.quant.quantize_model computed by AIMET (see the module docstring): same arguments, same
    result (symbols s = q + 2^(b-1) and float32 steps of W0, b0, W1, ...); the model is not modified.
    `seed` seeds torch's global generator for AIMET's AdaRound sampling (restored afterwards).
    Raises InrError without aimet-torch."""
    out = aimet_readout(model, features, targets, bitwidth, adaround=adaround,
                        adaround_iterations=adaround_iterations, adaround_reg=adaround_reg, retrain=retrain,
                        retrain_epochs=retrain_epochs, retrain_lr=retrain_lr, reference=reference, seed=seed,
                        progress=progress)
    return out.quantized(bitwidth)


def aimet_readout(model: nn.Module, features: torch.Tensor, targets: torch.Tensor, bitwidth: int, *,
                  adaround: bool, adaround_iterations: int, adaround_reg: float, retrain: bool,
                  retrain_epochs: int, retrain_lr: float, reference, seed: int, progress: bool,
                  on_stage: Callable[[str, SimReadout], None] | None = None) -> SimReadout:
    """The AIMET pipeline of quantize_model_aimet; returns the final sim's SimReadout.
    on_stage(name, readout), when given, also sees the state after each stage that runs: "nearest"
    (compute_encodings), "adaround", "retrain" (the benchmark measures all three from one run)."""
    b = _check_bitwidth(bitwidth)
    if int(adaround_iterations) < 0 or int(retrain_epochs) < 0:
        raise InrError("adaround_iterations and retrain_epochs must be >= 0")
    if not adaround_reg >= 0 or not retrain_lr >= 0:
        raise InrError("adaround_reg and retrain_lr must be >= 0")
    rep, tensors = _declared(model)
    x, y = _flatten_rows(features, targets, rep.inputs_width(), rep.out_features, tensors[0].device)
    chain = build_chain(model, reference)  # refuses representations AIMET cannot take, before AIMET loads
    aimet = _aimet()
    aimet["QuantizationMixin"].ignore(LayerActivation)

    with tempfile.TemporaryDirectory(prefix="inr-aimet-") as workdir, _quiet_aimet(progress), \
            torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        config_path = os.path.join(workdir, "quantsim_config.json")
        with open(config_path, "w") as f:
            json.dump(AIMET_CONFIG, f)
        def stage(name: str, readout: SimReadout | None = None) -> SimReadout:
            if readout is None:
                sim.model.eval()
                readout = _readout(sim, chain, b, _sim_mse(sim, x, y))
            if on_stage is not None:
                on_stage(name, readout)
            return readout

        sim = _make_sim(aimet, chain, x, b, config_path)
        sim.compute_encodings(lambda m, _: _forward_rows(m, x), None)
        out = stage("nearest") if on_stage is not None else None
        if adaround and int(adaround_iterations) > 0:
            sim, chain = _adaround(aimet, sim, chain, x, b, int(adaround_iterations), float(adaround_reg),
                                   config_path, workdir)
            out = stage("adaround")
        if retrain and int(retrain_epochs) > 0:
            out = stage("retrain", _retrain(sim, chain, b, x, y, int(retrain_epochs), float(retrain_lr), progress))
        return out if out is not None else stage("nearest")

