"""Shared fixtures: the real FSDD folder and a feature cache shared by the end-to-end tests."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def find_fsdd() -> Path | None:
    """$SCNN_DATA_DIR if set, else the shared copy beside the checkout."""
    candidates = [os.environ.get("SCNN_DATA_DIR"), REPO.parent / "shared" / "data" / "fsdd" / "recordings"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir() and any(Path(candidate).glob("*.wav")):
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def fsdd_dir() -> Path:
    folder = find_fsdd()
    if folder is None:
        pytest.skip("real FSDD recordings not found: set SCNN_DATA_DIR to the folder of wavs")
    return folder


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory) -> Path:
    """One feature cache for the whole session, so the 3,000 files are extracted once."""
    return tmp_path_factory.mktemp("feature-cache")
