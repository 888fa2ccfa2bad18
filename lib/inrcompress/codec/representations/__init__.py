"""The registry of representations (the kinds of model the codec can code), by name.

A new representation is one new Representation subclass (see base.py) decorated with
@register_representation, in a new module of this package imported at the bottom of this file (or,
outside the library, anywhere before it is used: tests/test_representation_seam.py registers one
from the test suite). Nothing else in the codec changes: the quantizer, the file format and the
decoder look representations up here.
"""

from __future__ import annotations

from typing import Any

from inrcompress.codec.representations.base import Representation
from inrcompress.errors import CorruptFileError, InrError

REPRESENTATIONS: dict[str, type[Representation]] = {}


def register_representation(cls: type[Representation]) -> type[Representation]:
    """Class decorator: add `cls` under cls.name; its file_id (1..255) must be free too."""
    if cls.name in REPRESENTATIONS:
        raise InrError(f"a representation named {cls.name!r} is already registered")
    if not 1 <= cls.file_id <= 255:
        raise InrError(f"file_id of {cls.name!r} must be in 1..255, got {cls.file_id}")
    for other in REPRESENTATIONS.values():
        if other.file_id == cls.file_id:
            raise InrError(f"file_id {cls.file_id} of {cls.name!r} is taken by {other.name!r}")
    REPRESENTATIONS[cls.name] = cls
    return cls


def unregister_representation(name: str) -> None:
    """Remove a registered representation (for tests that register their own)."""
    REPRESENTATIONS.pop(name, None)


def representation_by_name(name: str) -> type[Representation]:
    if name not in REPRESENTATIONS:
        raise InrError(f"unknown representation {name!r}; known: {', '.join(sorted(REPRESENTATIONS))}")
    return REPRESENTATIONS[name]


def representation_by_file_id(file_id: int) -> type[Representation]:
    """The representation a file's id names; an unknown id is a CorruptFileError."""
    for cls in REPRESENTATIONS.values():
        if cls.file_id == file_id:
            return cls
    raise CorruptFileError(f"unknown representation id {file_id}")


def representation_of(obj: Any) -> Representation:
    """The architecture of a fitted module (or of another description a representation accepts)."""
    if isinstance(obj, Representation):
        return obj
    for cls in REPRESENTATIONS.values():
        found = cls.describe(obj)
        if found is not None:
            return found
    raise InrError(f"no registered representation describes a {type(obj).__name__}")


from inrcompress.codec.representations import siren  # noqa: E402,F401  (registers SirenMLP)
from inrcompress.codec.representations import latent  # noqa: E402,F401  (registers LatentGrid)
