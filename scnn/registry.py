"""The one shape every registry of the package has: names to entries, and one error for a name
that is not there (naming what is)."""

from __future__ import annotations


class Registry(dict):
    """``{name: entry}`` of one kind of thing ("neuron", "dataset", "encoding", ...)."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def lookup(self, name: str):
        """The entry of ``name``; ValueError "unknown KIND 'name'; registered: a, b" if there is none."""
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; registered: {', '.join(sorted(self))}")
        return self[name]
