"""The registry of the arithmetic coder's probability models.

An arithmetic stream opens with one byte, the model id; what follows is the model's own stream
(its "body"). Each model is one EntropyModel subclass, anywhere, registered by name:

    @register_entropy_model("raw")
    class RawSymbols(EntropyModel):
        model_id = 6                       # the stream's first byte, forever
        def encode(self, tensors, bitwidth): ...
        def decode(self, data, lengths, bitwidth): ...

"Smallest of all" (encode_symbols with model=None) tries every registered model in id order.
Ids are what files store: a model's id is never renumbered or reused, new models take new ids.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from inrcompress.codec.entropy.symbols import Symbols
from inrcompress.errors import CorruptFileError


class EntropyModel:
    """One probability model of the arithmetic coder.

    model_id: the stream's first byte (0..255), a class attribute; name: set by
    register_entropy_model. Every method gets the tensors as a Symbols (validated int64 1-D
    arrays; see symbols.py) and the bitwidth; lengths and bitwidth given to decode come from a
    validated header and are trusted.
    """

    model_id: int
    name: str = ""

    def refuses(self, tensors: Symbols, bitwidth: int) -> str | None:
        """Why this model cannot code these symbols, or None when it can (the default)."""
        return None

    def encode(self, tensors: Symbols, bitwidth: int) -> bytes:
        """The body of the stream (everything after the model id byte)."""
        raise NotImplementedError

    def decode(self, data: bytes, lengths: list[int], bitwidth: int) -> list[np.ndarray]:
        """Invert encode: int64 arrays of the given lengths. `data` is the body and must be
        consumed exactly; anything wrong with it raises CorruptFileError, and nothing is
        allocated from a size read out of it before that size is bounded by lengths/bitwidth."""
        raise NotImplementedError

    def cost_bits(self, tensors: Symbols, bitwidth: int) -> float:
        """Bits of encode(tensors, bitwidth), for choosing models and for rate terms. This default
        is exact (it encodes); models override it with a cheaper estimate whose error bound is
        stated in their docstring and checked in tests/test_coding.py."""
        return 8.0 * len(self.encode(tensors, bitwidth))


_MODELS_BY_ID: dict[int, EntropyModel] = {}


def register_entropy_model(name: str):
    """Class decorator: register an EntropyModel subclass under `name` (its id is its
    model_id). ValueError if the name or the id is taken, or the id is not a byte."""

    def register(cls: type[EntropyModel]) -> type[EntropyModel]:
        model_id = getattr(cls, "model_id", None)
        if not isinstance(name, str) or not name:
            raise ValueError(f"an entropy model needs a non-empty name, got {name!r}")
        if isinstance(model_id, bool) or not isinstance(model_id, int) or not 0 <= model_id <= 255:
            raise ValueError(f"{cls.__name__}.model_id must be an integer in 0..255, got {model_id!r}")
        if model_id in _MODELS_BY_ID:
            raise ValueError(f"model id {model_id} is taken by {_MODELS_BY_ID[model_id].name!r}")
        if name in model_names():
            raise ValueError(f"an entropy model named {name!r} is already registered")
        cls.name = name
        _MODELS_BY_ID[model_id] = cls()
        return cls

    return register


def unregister_entropy_model(name: str) -> None:
    """Remove the model registered as `name` (KeyError if there is none)."""
    model = model_by_name(name, error=KeyError)
    del _MODELS_BY_ID[model.model_id]


@contextmanager
def entropy_model_registered(name: str, cls: type[EntropyModel]) -> Iterator[EntropyModel]:
    """Register `cls` as `name` for the duration of a with block (tests, experiments), so that
    it can never outlive the block."""
    register_entropy_model(name)(cls)
    try:
        yield model_by_name(name)
    finally:
        unregister_entropy_model(name)


def registered_models() -> list[EntropyModel]:
    """Every registered model, in id order (the order "smallest of all" tries them, ties going
    to the lower id: the paper's global table first)."""
    return [_MODELS_BY_ID[i] for i in sorted(_MODELS_BY_ID)]


def model_names() -> tuple[str, ...]:
    return tuple(m.name for m in registered_models())


def model_by_name(name: str, error: type[Exception] = ValueError) -> EntropyModel:
    for model in _MODELS_BY_ID.values():
        if model.name == name:
            return model
    raise error(f"model must be one of {model_names()}, got {name!r}")


def model_by_id(model_id: int) -> EntropyModel:
    """The model a stream's first byte names; CorruptFileError for an id nobody registered."""
    model = _MODELS_BY_ID.get(model_id)
    if model is None:
        raise CorruptFileError(f"unknown arithmetic-coding model id {model_id}")
    return model


class ModelNames(Sequence):
    """The registered model names in id order, read live from the registry (so a model
    registered later, or only inside a with block, shows up exactly while it is registered)."""

    def __getitem__(self, index):
        return model_names()[index]

    def __len__(self) -> int:
        return len(_MODELS_BY_ID)

    def __repr__(self) -> str:
        return repr(model_names())
