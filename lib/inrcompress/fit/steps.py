"""How a fitting step computes the loss and its gradients and updates the parameters: the plug-ins of
the fit engine (fit/engine.py, which keeps all per-signal bookkeeping).

ChunkedAutogradStep: one signal; the encoding of the coordinates is computed once, a step runs
    forward+backward over row chunks (gradients accumulate), which keeps the activations in the CPU
    cache; torch.compile fuses each chunk's sine layers; float16 autocast on CUDA with cfg.amp;
    minibatches of points (cfg.batch_size) for SDF samples. torch.optim.Adam.
BatchedImagesStep: N same-size signals of one architecture as one batched computation. The N
    networks are stacked into (N, out, in) weights and backpropagated by hand
    (nn.stacked_mlp_sse_grads: no autograd graph; compiled, forward and backward are one graph); on a
    pixel grid the first layer runs per row and column (nn.separable_grid_features). Adam is written
    out with a per-signal step size (torch.optim.Adam's formula), so each signal keeps its own
    schedule; for equal seeds the result equals fitting one by one up to float rounding.
Both are exact up to float summation order against the plain full-batch autograd step.
"""

from __future__ import annotations

import math
import shutil
import warnings

import torch
from torch import nn

from inrcompress.config import TrainConfig
from inrcompress.fit.engine import StepValues
from inrcompress.fit.losses import FitLoss, summed
from inrcompress.nn import INR, mlp_forward, separable_grid_features, stacked_mlp_sse_grads

DEFAULT_CPU_CHUNK_ROWS = 8192
BATCHED_CPU_CHUNK_ROWS = 1024
# Below this many points a step is too cheap for compilation (seconds, once) to pay off.
COMPILE_MIN_POINTS = 65536
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def compiler_available() -> bool:
    return shutil.which("gcc") is not None or shutil.which("cc") is not None or shutil.which("clang") is not None


_compiled: dict = {}


def compiled(function):
    """One compiled `function` for the process, shared by every model. The first shape is compiled
    static; a second one (another image size, a last partial chunk) recompiles once with dynamic
    sizes. (dynamic=False compiled every new shape and, after torch's limit of 8, silently ran the
    rest eagerly: 2x slower.)"""
    if function not in _compiled:
        _compiled[function] = torch.compile(function, dynamic=None)
    return _compiled[function]


def adam_state_by_name(optimizer: torch.optim.Optimizer, named: list[tuple[str, torch.Tensor]]) -> dict:
    """torch.optim.Adam's moments keyed by parameter name (the engine's resume format)."""
    state = {"step": 0, "exp_avg": {}, "exp_avg_sq": {}}
    for name, p in named:
        s = optimizer.state.get(p)
        if s:
            state["step"] = int(s["step"])
            state["exp_avg"][name] = s["exp_avg"].detach().clone()
            state["exp_avg_sq"][name] = s["exp_avg_sq"].detach().clone()
    return state


def load_adam_state_by_name(optimizer: torch.optim.Optimizer, named: list[tuple[str, torch.Tensor]],
                            state: dict) -> None:
    for name, p in named:
        if name in state["exp_avg"]:
            optimizer.state[p] = {"step": torch.tensor(float(state["step"]), dtype=torch.float32),
                                  "exp_avg": state["exp_avg"][name].to(p).clone(),
                                  "exp_avg_sq": state["exp_avg_sq"][name].to(p).clone()}


class ChunkedAutogradStep:
    """One signal (coords (P, d) -> values (P, C)) through autograd over row chunks (module docstring).
    chunk_rows: rows per forward/backward chunk; -1 picks (CPU: 8192, CUDA: all), None = all."""

    n_signals = 1

    def __init__(self, model: INR, coords: torch.Tensor, values: torch.Tensor, cfg: TrainConfig, loss: FitLoss,
                 chunk_rows: int | None = -1):
        device = next(model.parameters()).device
        self.model, self.values, self.loss, self.seed = model, values, loss, cfg.seed
        self.chunk_rows = (DEFAULT_CPU_CHUNK_ROWS if device.type == "cpu" else None) if chunk_rows == -1 else chunk_rows
        use_compile = cfg.compile
        if use_compile and device.type == "cpu" and not compiler_available():
            warnings.warn("no C compiler found: torch.compile is off, the fit runs eagerly")
            use_compile = False
        self.amp = cfg.amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if self.amp else None
        if use_compile:
            forward = compiled(mlp_forward)
            activation = model.cfg.activation
            self.head = lambda x: forward(x, [layer.weight for layer in model.layers],
                                          [layer.bias for layer in model.layers], activation)
        else:
            self.head = model.head
        with torch.no_grad():
            self.features = model.encode(coords)
        self.n_points = values.shape[0]
        self.batch_size = cfg.batch_size if cfg.batch_size and cfg.batch_size < self.n_points else self.n_points
        self.steps_per_epoch = math.ceil(self.n_points / self.batch_size)
        self.named = list(model.named_parameters())
        self.parameter_names = [name for name, _ in self.named]
        self.optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        self._shuffle = torch.Generator(device="cpu")
        self._order_epoch, self._order = None, None

    def _batch(self, epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.steps_per_epoch == 1:
            return self.features, self.values
        if self._order_epoch != epoch:
            self._order = torch.randperm(self.n_points, generator=self._shuffle.manual_seed(
                self.seed * 100003 + epoch)).to(self.features.device)
            self._order_epoch = epoch
        idx = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        return self.features[idx], self.values[idx]

    def _backward(self, value: torch.Tensor) -> None:
        (self.scaler.scale(value) if self.scaler is not None else value).backward()

    def compute(self, epoch: int, index: int) -> StepValues:
        features, targets = self._batch(epoch, index)
        self.optimizer.zero_grad(set_to_none=True)
        n = features.shape[0]
        chunk = self.chunk_rows or n
        denominator = n * targets.shape[1]
        data = torch.zeros((), device=features.device)
        for start in range(0, n, chunk):
            with torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
                pred = self.head(features[start:start + chunk])
            part = ((pred.float() - targets[start:start + chunk]) ** 2).sum() / denominator
            self._backward(part)
            data += part.detach()
        terms = self.loss.term_values({name: p.unsqueeze(0) for name, p in self.named})
        total = data.reshape(1)
        if terms:
            self._backward(summed(terms.values()).sum())
            total = total + summed(v.detach() for v in terms.values())
        return StepValues(total=total, data=data.reshape(1), terms={k: v.detach() for k, v in terms.items()})

    def update(self, lrs: list[float], active: list[bool]) -> None:
        if not active[0]:
            return
        for group in self.optimizer.param_groups:
            group["lr"] = lrs[0]
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()

    def parameters_of(self, n: int) -> dict[str, torch.Tensor]:
        return {name: p.detach().clone() for name, p in self.named}

    def load_parameters(self, n: int, params: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, p in self.named:
                p.copy_(params[name])

    def optimizer_state_of(self, n: int) -> dict:
        state = adam_state_by_name(self.optimizer, self.named)
        state["scaler"] = self.scaler.state_dict() if self.scaler is not None else None
        return state

    def load_optimizer_state(self, n: int, state: dict) -> None:
        load_adam_state_by_name(self.optimizer, self.named, state)
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    def model_of(self, n: int) -> nn.Module:
        return self.model


def gradient_block_rows(n_rows: int, target: int = 8192) -> int:
    """The divisor of n_rows nearest to `target` within [target/4, 4*target], or 0 if there is none
    (then the weight gradients are single GEMMs). 393,216 Kodak pixels -> 8192."""
    candidates = [d for d in range(target // 4, 4 * target + 1) if n_rows % d == 0 and d < n_rows]
    return min(candidates, key=lambda d: (abs(d - target), d)) if candidates else 0


class BatchedImagesStep:
    """models[n] fitted to values[n], all at coords (P, d), as one batched computation (module
    docstring). grid_shape: (h, w) when coords is a row-major h x w grid; with an encoding whose
    features each depend on one coordinate, the first layer then runs per grid row and column."""

    steps_per_epoch = 1

    def __init__(self, models: list[INR], coords: torch.Tensor, values: list[torch.Tensor], cfg: TrainConfig,
                 loss: FitLoss, chunk_rows: int | None = -1, grid_shape: tuple[int, int] | None = None):
        if cfg.batch_size:
            raise ValueError("the batched step fits whole signals; fit one by one for minibatches of points")
        if any(m.cfg != models[0].cfg for m in models):
            raise ValueError("signals fitted together need models of one architecture")
        self.models, self.loss, self.n_signals = models, loss, len(models)
        device = next(models[0].parameters()).device
        use_compile = cfg.compile and (device.type != "cpu" or compiler_available())
        if chunk_rows == -1:  # the fastest sizes measured on the CPU (RESULTS.md, section 2)
            if device.type != "cpu":
                chunk_rows = None
            elif use_compile:
                chunk_rows = BATCHED_CPU_CHUNK_ROWS
            else:  # eager elementwise passes want the activations of all images in cache: 8192 rows in all
                chunk_rows = max(256, DEFAULT_CPU_CHUNK_ROWS // self.n_signals)
        # On a GPU the whole signal goes in one chunk and each weight gradient is summed over row blocks
        # (see stacked_mlp_sse_grads); a CPU reduces over a chunk's few hundred rows in one GEMM.
        self.split_rows = 0 if device.type == "cpu" else gradient_block_rows(chunk_rows or len(coords))
        self.sse_grads = compiled(stacked_mlp_sse_grads) if use_compile else stacked_mlp_sse_grads
        self.activation = models[0].cfg.activation
        self.n_layers = len(models[0].layers)
        with torch.no_grad():
            self.features = models[0].encode(coords)
        self.targets = torch.stack(values)  # (N, P, C)
        n_points = self.targets.shape[1]
        self.grid = None
        if grid_shape is not None and grid_shape[0] * grid_shape[1] == n_points:
            self.grid = separable_grid_features(self.features, grid_shape)
        self.params = []  # W0, b0, W1, b1, ... each (N, ...)
        for k in range(self.n_layers):
            self.params.append(torch.stack([m.layers[k].weight.detach() for m in models]).clone())
            self.params.append(torch.stack([m.layers[k].bias.detach() for m in models]).clone())
        self.parameter_names = [f"layers.{k}.{kind}" for k in range(self.n_layers) for kind in ("weight", "bias")]
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.adam_step = 0
        chunk = chunk_rows or n_points
        if self.grid is not None:  # chunks of whole grid rows
            self.grid_w = grid_shape[1]
            chunk = max(1, chunk // self.grid_w) * self.grid_w
        self.chunks = [(start, min(start + chunk, n_points)) for start in range(0, n_points, chunk)]
        self.grads = None

    def compute(self, epoch: int, index: int) -> StepValues:
        params, grid = self.params, self.grid
        grads = [torch.zeros_like(p) for p in params]
        n_points, n_channels = self.targets.shape[1], self.targets.shape[2]
        data = torch.zeros(self.n_signals, device=params[0].device)
        weights, biases = params[0::2], params[1::2]
        if grid is not None:  # the first layer's column terms, shared by every chunk of this step
            column_part = torch.matmul(grid[1], weights[0].transpose(1, 2))
            column_sums = torch.zeros_like(column_part)
        for start, stop in self.chunks:
            inputs = ((grid[0][start // self.grid_w:stop // self.grid_w], column_part) if grid is not None
                      else self.features[start:stop])
            part, weight_grads, bias_grads, chunk_column_sums = self.sse_grads(
                inputs, weights, biases, self.activation, self.targets[:, start:stop], 1.0 / (n_points * n_channels),
                self.split_rows)
            for k in range(self.n_layers):
                grads[2 * k].add_(weight_grads[k])
                grads[2 * k + 1].add_(bias_grads[k])
            if grid is not None:
                column_sums += chunk_column_sums
            data += part
        if grid is not None:
            grads[0] += torch.matmul(column_sums.transpose(1, 2), grid[1])
        terms, term_grads = self.loss.term_values_and_grads(dict(zip(self.parameter_names, params)))
        total = data
        if terms:
            for k, name in enumerate(self.parameter_names):
                grads[k].add_(term_grads[name])
            total = data + summed(terms.values())
        self.grads = grads
        return StepValues(total=total, data=data, terms=terms)

    def update(self, lrs: list[float], active: list[bool]) -> None:
        """Adam, with each signal's own step size; finished signals stand still."""
        beta1, beta2 = ADAM_BETAS
        self.adam_step += 1
        device = self.params[0].device
        lr = torch.tensor(lrs, device=device, dtype=torch.float32)
        mask = torch.tensor(active, device=device)
        bias1 = 1 - beta1 ** self.adam_step
        bias2_sqrt = math.sqrt(1 - beta2 ** self.adam_step)
        with torch.no_grad():
            for p, g, m, v in zip(self.params, self.grads, self.exp_avg, self.exp_avg_sq):
                shape = (-1,) + (1,) * (p.dim() - 1)
                grad = torch.where(mask.view(shape), g, torch.zeros_like(g))
                m.lerp_(grad, 1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (v.sqrt() / bias2_sqrt).add_(ADAM_EPS)
                p.sub_((lr / bias1).view(shape) * m / denom)
        self.grads = None

    def parameters_of(self, n: int) -> dict[str, torch.Tensor]:
        return {name: p[n].detach().clone() for name, p in zip(self.parameter_names, self.params)}

    def load_parameters(self, n: int, params: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, p in zip(self.parameter_names, self.params):
                p[n] = params[name]

    def optimizer_state_of(self, n: int) -> dict:
        return {"step": self.adam_step,
                "exp_avg": {name: m[n].clone() for name, m in zip(self.parameter_names, self.exp_avg)},
                "exp_avg_sq": {name: v[n].clone() for name, v in zip(self.parameter_names, self.exp_avg_sq)}}

    def load_optimizer_state(self, n: int, state: dict) -> None:
        self.adam_step = int(state["step"])
        with torch.no_grad():
            for name, m, v in zip(self.parameter_names, self.exp_avg, self.exp_avg_sq):
                if name in state["exp_avg"]:
                    m[n] = state["exp_avg"][name]
                    v[n] = state["exp_avg_sq"][name]

    def model_of(self, n: int) -> nn.Module:
        model = self.models[n]
        with torch.no_grad():
            for k, layer in enumerate(model.layers):
                layer.weight.copy_(self.params[2 * k][n])
                layer.bias.copy_(self.params[2 * k + 1][n])
        return model
