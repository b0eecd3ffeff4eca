"""A string-keyed registry per pluggable family (strategies, models, datasets, aggregators).

Families register with a decorator instead of ``if/elif`` dispatch on names, so adding a
member is one file and one line, and an unknown name fails with the list of valid ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from obliviate.errors import ConfigError, UnknownNameError

__all__ = ["Registry"]

T = TypeVar("T")

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class Registry(Generic[T]):
    """Maps lowercase snake_case names to members of one family.

    Args:
        kind: What the family is called in error messages, e.g. ``"strategy"``.

    Example:
        >>> AGGREGATORS: Registry[str] = Registry("aggregator")
        >>> _ = AGGREGATORS.add("vote", "label vote")
        >>> AGGREGATORS.get("vote")
        'label vote'
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._members: dict[str, T] = {}

    def add(self, name: str, member: T, *, force: bool = False) -> T:
        """Registers ``member`` under ``name``; duplicates raise unless ``force`` is set."""
        if not _NAME.match(name):
            raise ConfigError(
                f"{self.kind} names must be lowercase snake_case (like 'label_vote'); got {name!r}."
            )
        if name in self._members and not force:
            raise ConfigError(
                f"a {self.kind} named {name!r} is already registered; "
                "pass force=True to replace it."
            )
        self._members[name] = member
        return member

    def register(self, name: str, *, force: bool = False) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def decorate(member: T) -> T:
            return self.add(name, member, force=force)

        return decorate

    def get(self, name: str) -> T:
        """Returns the member registered as ``name``.

        Raises:
            UnknownNameError: ``name`` is not registered; the message lists what is.
        """
        try:
            return self._members[name]
        except KeyError:
            valid = ", ".join(sorted(self._members)) or "(none)"
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; registered {self.kind}s: {valid}."
            ) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._members)

    def items(self) -> list[tuple[str, T]]:
        """(name, member) pairs, sorted by name."""
        return sorted(self._members.items())

    def __contains__(self, name: object) -> bool:
        return name in self._members

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._members)
