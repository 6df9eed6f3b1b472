"""A run folder's bookkeeping: per-epoch metrics files and the library versions of a run."""

from __future__ import annotations

import csv
import io
import json
import platform
from pathlib import Path

import numpy as np
import torch

from scnn.io import write_text

# Every results.json that scnn writes carries "schema_version" (this) and "kind" ("train", "evaluate",
# "quantize"); docs/results_schema.md describes every key of each kind. Bump when a key is renamed,
# removed or changes meaning (adding a key does not need a bump).
RESULTS_SCHEMA_VERSION = 1


def library_versions() -> dict:
    import librosa
    import snntorch

    return {"python": platform.python_version(), "torch": torch.__version__, "snntorch": snntorch.__version__,
            "librosa": librosa.__version__, "numpy": np.__version__, "platform": platform.platform()}



def write_history(out_dir: Path, history: list[dict]) -> None:
    """metrics.jsonl and metrics.csv, rewritten whole from the history (no duplicates after resume)."""
    write_text(out_dir / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in history))
    columns = list(dict.fromkeys(key for row in history for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    write_text(out_dir / "metrics.csv", buffer.getvalue())

