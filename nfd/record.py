"""``Record``: the ``__repr__`` and ``__eq__`` of a dataclass, for plain classes.

The worker's data classes (features, config, rules, discovery results) are
plain classes with ``__slots__`` and an explicit ``__init__`` instead of
dataclasses: importing ``dataclasses`` brings ``inspect`` and generates each
class with ``exec``, ~25 ms of a oneshot worker's start (docs/startup.md).
Subclassing ``Record`` gives them what the dataclass gave besides ``__init__``:
a repr and equality over their slots, in slot order. Slots whose name starts
with ``_`` (caches) are left out of both, as ``field(repr=False,
compare=False)`` did. Like a dataclass, a record is unhashable unless the
class defines ``__hash__`` (``record_hash`` for the immutable ones).
"""

from __future__ import annotations


class Record:
    __slots__: tuple[str, ...] = ()

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in type(self).__slots__ if name[0] != "_")

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={getattr(self, name)!r}" for name in type(self).__slots__ if name[0] != "_"
        )
        return f"{type(self).__qualname__}({fields})"

    def __eq__(self, other: object) -> bool:
        # Only an instance of the very same class compares, as with a dataclass.
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Record)
        return self._fields() == other._fields()

    # Defining __eq__ sets __hash__ to None: records are unhashable unless the
    # class says otherwise.


def record_hash(self: Record) -> int:
    """``__hash__`` for records treated as immutable (a frozen dataclass's hash)."""
    return hash(self._fields())
