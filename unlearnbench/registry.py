"""One name -> object table per extension point (methods, tasks), filled by a decorator."""
from __future__ import annotations


class Registry(dict):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str, obj) -> None:
        if name in self:
            raise ValueError(f"duplicate {self.kind} name {name!r}; registered already: {sorted(self)}")
        self[name] = obj

    def get_or_raise(self, name: str):
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; choose from {sorted(self)}")
        return self[name]
