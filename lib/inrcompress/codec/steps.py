"""Quantization step sizes as the file stores them (numpy only: the container reads them without torch).

A tensor has one step (a float32-exact float), or, beyond the paper, one step per output channel
(ChannelSteps; --per_channel_steps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inrcompress.errors import InrError


def float32_step(step) -> float:
    """`step` as a float32-exact positive finite float (InrError otherwise)."""
    s = np.float32(step)
    if not (np.isfinite(s) and s > 0):
        raise InrError(f"step size must be a positive finite float32, got {step!r}")
    return float(s)


# Per-output-channel steps (beyond the paper): row r of a tensor has the step
# float32(step) * float32((code_r + 1) / CHANNEL_STEP_LEVELS), code_r in 0..255 (one byte a row in
# the file), both factors and their float32 product exact IEEE operations, so encoder and decoder
# compute the same steps on any machine.
CHANNEL_STEP_LEVELS = 256


@dataclass(frozen=True)
class ChannelSteps:
    """The steps of one tensor, one per output channel (its first dimension): row r's step is
    float32(step) * float32((codes[r] + 1) / 256), computed in float32. step: float32-exact, the
    coarsest row's step; codes: uint8 (rows,)."""

    step: float
    codes: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "step", float32_step(self.step))
        codes = np.asarray(self.codes)
        if codes.ndim != 1 or codes.size == 0 or codes.dtype != np.uint8:
            raise InrError(f"channel step codes must be a non-empty uint8 vector, got {codes.dtype} {codes.shape}")
        object.__setattr__(self, "codes", codes)

    @property
    def values(self) -> np.ndarray:
        """float32 (rows,): every row's step."""
        ratios = (self.codes.astype(np.float32) + np.float32(1)) / np.float32(CHANNEL_STEP_LEVELS)
        return np.float32(self.step) * ratios

    @classmethod
    def from_row_steps(cls, row_steps: np.ndarray) -> ChannelSteps:
        """The representable steps closest to the wanted (rows,) steps from above: the coarsest
        row's step exactly, every other row's ratio to it rounded up to a multiple of 1/256 (a
        step finer than wanted would clip the row's largest values; a row wanting less than 1/256
        of the coarsest step gets 1/256)."""
        wanted = np.asarray(row_steps, dtype=np.float64)
        top = float(wanted.max())
        ratios = wanted / top * CHANNEL_STEP_LEVELS
        codes = np.clip(np.ceil(ratios * (1 - 1e-12)) - 1, 0, CHANNEL_STEP_LEVELS - 1)
        return cls(top, codes.astype(np.uint8))

    def scaled(self, factor: float) -> ChannelSteps:
        """Every row's step times `factor` (the ratios between rows kept)."""
        return ChannelSteps(self.step * float(factor), self.codes)

    def __eq__(self, other) -> bool:
        return (isinstance(other, ChannelSteps) and self.step == other.step
                and np.array_equal(self.codes, other.codes))

    def __hash__(self) -> int:
        return hash((self.step, self.codes.tobytes()))


Step = float | ChannelSteps  # the step(s) of one tensor


def step_values(step: Step) -> np.ndarray:
    """float32 steps of one tensor: shape () for a per-tensor step, (rows,) for ChannelSteps."""
    return step.values if isinstance(step, ChannelSteps) else np.asarray(np.float32(float32_step(step)))


def representative_step(step: Step) -> float:
    """One number for a tensor's steps: the step itself, or the geometric mean of its rows' steps
    (what sets the rate: a row's bits fall with log2 of its step)."""
    if isinstance(step, ChannelSteps):
        return float(np.exp(np.mean(np.log(step.values.astype(np.float64)))))
    return float(step)


