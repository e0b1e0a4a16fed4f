"""Name → function registries for every knob, with errors that list the valid names."""

from __future__ import annotations

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

    def get(self, name: str) -> F:  # type: ignore[override]
        if name not in self:
            raise OpdbenchError(f"unknown {self.kind} {name!r}; valid: {', '.join(sorted(self))}")
        return self[name]
