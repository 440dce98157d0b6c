"""A base for small value classes: equality and repr over their ``__slots__``."""

from __future__ import annotations


class SlotRecord:
    __slots__: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # mutable values

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{s}={getattr(self, s)!r}" for s in self.__slots__) + ")"
