"""Feature extraction speed: all FSDD files, first run (one worker, then every core), cached run, and the
content hashing (SHA-256 of every file's bytes) that the cache key needs on every run (printed).

Writes the "feature_speed" table (:mod:`scnn.result_tables`, docs/results_formats.md):
OUT/summary.csv, one row per measurement, and its sidecar OUT/summary.json (the machine).
Example:
    python benchmarks/feature_speed.py --data-dir ../shared/data/fsdd/recordings
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from scnn.data import list_fsdd, locate_fsdd
from scnn.features import content_digest, extract_features, feature_config
from scnn.result_tables import write_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--max-files", type=int, default=0, help="time only the first N recordings (0: all)")
    parser.add_argument("--out", default="runs/feature_speed")
    args = parser.parse_args()
    paths = [r.path for r in list_fsdd(locate_fsdd(args.data_dir, download=False))]
    paths = paths[:args.max_files] if args.max_files else paths
    config = feature_config(args.preset)
    extract_features(paths[:50], config, workers=1, progress=False)  # warm-up: librosa's numba compilation
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for workers in dict.fromkeys((1, os.cpu_count())):
            start = time.perf_counter()
            extract_features(paths, config, workers=workers, progress=False)
            rows.append({"files": len(paths), "feature_preset": args.preset, "workers": workers, "cached": False,
                         "seconds": time.perf_counter() - start})
            print(f"{len(paths)} files, preset {args.preset}, {workers} worker(s), no cache: "
                  f"{rows[-1]['seconds']:.1f} s", flush=True)
        extract_features(paths, config, cache_dir=cache, progress=False)
        start = time.perf_counter()
        result = extract_features(paths, config, cache_dir=cache, progress=False)
        assert result.from_cache
        rows.append({"files": len(paths), "feature_preset": args.preset, "workers": os.cpu_count(), "cached": True,
                     "seconds": time.perf_counter() - start})
        print(f"{len(paths)} files, cached: {rows[-1]['seconds']:.3f} s (hashing included)")
    size = sum(os.path.getsize(path) for path in paths)
    start = time.perf_counter()
    for path in paths:
        content_digest(path)
    elapsed = time.perf_counter() - start
    print(f"{len(paths)} files, {size / 1e6:.1f} MB, SHA-256 of their bytes: {elapsed:.3f} s "
          f"({size / elapsed / 1e6:.0f} MB/s, {1e6 * elapsed / len(paths):.0f} us per file)")
    path = write_table(rows, Path(args.out) / "summary.csv", "feature_speed",
                       {"machine": platform.platform(), "processor": platform.processor(), "cores": os.cpu_count()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
