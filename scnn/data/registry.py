"""Datasets by name: each one lists its recordings (path, label, group) and knows its classes.

A dataset is one module that defines a function ``(config) -> DatasetListing`` and
registers it::

    @register_dataset("fsdd")
    def fsdd_listing(config: DataConfig) -> DatasetListing: ...

:func:`scnn.data.prepare.prepare_data` asks the registry for the listing by
``DataConfig.dataset`` and splits, extracts and normalises whatever it returns.
This module imports no dataset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from scnn.registry import Registry


@dataclass(frozen=True)
class Recording:
    """One audio file and its label (class index).

    speaker: the group a speaker-independent split keeps together (None where unknown);
    take: FSDD's take number; official_part: "train", "val" or "test" in the dataset's own
    split (None where the dataset defines none).
    """

    path: Path
    label: int
    speaker: str | None = None
    take: int | None = None
    official_part: str | None = None


@dataclass
class DatasetListing:
    """What a dataset module returns: every recording, the class names (index = label), the
    folder they came from, and the files it could not use (a name that carries no label, audio
    outside any class folder) as (path, reason): :func:`scnn.data.prepare.prepare_data` leaves
    them out with ``skip_bad`` and reports them, and otherwise stops naming them."""

    recordings: list[Recording]
    class_names: list[str]
    root: Path
    skipped: list[tuple[str, str]] = field(default_factory=list)


DATASETS: Registry = Registry("dataset")


def register_dataset(name: str) -> Callable:
    """Decorator: ``lister(config: DataConfig) -> DatasetListing`` becomes dataset ``name``."""

    def register(lister: Callable) -> Callable:
        DATASETS[name] = lister
        return lister

    return register


def list_datasets() -> list[str]:
    return sorted(DATASETS)


def dataset_listing(config) -> DatasetListing:
    """The listing of ``config.dataset`` (a :class:`scnn.data.prepare.DataConfig`)."""
    return DATASETS.lookup(config.dataset)(config)



def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/scnn``, else ``~/.cache/scnn``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "scnn"

