"""Name -> "module:attribute" tables, imported only when an entry is used.

Every pluggable kind (CLI stages, simulators, action heads, evaluation policies, selection
strategies) is one `Registry`; adding one of them is its module plus one `register` line:

    HEADS = Registry("action head")
    HEADS.register("pi0", "vlm2vla.policies.pi0_expert:Pi0Expert")
    HEADS.load("pi0")            # imports vlm2vla.policies.pi0_expert now, not before
    HEADS.load("pio")            # UnknownNameError: ... did you mean 'pi0'? Registered: gr00t, pi0, vlm4vla.

The targets are strings so that listing names (`--help`, `choice(...)` fields, error messages) never
imports torch or a simulator. An object defined at run time (in a notebook or a test) can be
registered as itself.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any


class UnknownNameError(ValueError):
    """A name no registry entry has; the message gives the closest names and every registered one."""


@dataclass(frozen=True)
class Entry:
    """One registered name: where its object lives, plus whatever the registry's users need to know."""

    name: str
    target: Any  # "package.module:attribute", or the object itself
    info: dict[str, Any] = field(default_factory=dict)


def load_target(target: str) -> Any:
    """Import "package.module:attribute" and return the attribute."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


class Registry:
    """Names of one kind of plug-in, each mapped to a lazily imported "module:attribute"."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, target: Any, **info: Any) -> None:
        """Add `name`; registering the same target again is a no-op, another target under it is refused.

        Args:
            name: the name configs use.
            target: "package.module:attribute" (imported on first use), or the object itself.
            info: what the registry's users need to know about the entry without importing it.

        Raises:
            ValueError: a string target is not "module:attribute", or `name` is taken by another target.
        """
        if isinstance(target, str):
            module, sep, attr = target.partition(":")
            if not (module and sep and attr):
                raise ValueError(f"{self.kind} {name!r}: target {target!r} must be 'package.module:attribute'")
        old = self._entries.get(name)
        if old is not None and old.target != target:
            raise ValueError(f"{self.kind} {name!r} is already registered as {old.target!r}")
        self._entries[name] = Entry(name, target, dict(info))

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def entry(self, name: str) -> Entry:
        """The entry of `name`.

        Raises:
            UnknownNameError: with the closest registered names.
        """
        if name not in self._entries:
            raise UnknownNameError(self.unknown_message(name))
        return self._entries[name]

    def load(self, name: str) -> Any:
        """Import and return the object registered as `name` (UnknownNameError for an unknown one)."""
        target = self.entry(name).target
        return load_target(target) if isinstance(target, str) else target

    def unknown_message(self, name: str, extra: tuple[str, ...] = ()) -> str:
        """"Unknown <kind> 'x'; did you mean ...? Registered: ..." (`extra`: names accepted besides these)."""
        names = [*extra, *self._entries]
        close = difflib.get_close_matches(str(name), names, n=3)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "."
        return f"Unknown {self.kind} {name!r}{hint} Registered: {', '.join(names)}."
