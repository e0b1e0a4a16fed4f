"""Name → function registries for every knob, with errors that list the valid names."""

from __future__ import annotations

import importlib
from typing import Callable, Generic, TypeVar

from .errors import OpdbenchError

F = TypeVar("F", bound=Callable)


class Registry(dict, Generic[F]):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[F], F]:
        def add(fn: F) -> F:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self[name] = fn
            return fn
        return add

    def register_lazy(self, name: str, target: str) -> None:
        """Register `package.module:attribute`, imported on the first `get`: a registry can list an
        entry that is heavy or rarely used (a real-tier task) without every process importing it."""
        if name in self:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self[name] = target

    def get(self, name: str) -> F:  # type: ignore[override]
        if name not in self:
            raise OpdbenchError(f"unknown {self.kind} {name!r}; valid: {', '.join(sorted(self))}")
        if isinstance(self[name], str):
            module, _, attribute = self[name].partition(":")
            self[name] = getattr(importlib.import_module(module), attribute)
        return self[name]
