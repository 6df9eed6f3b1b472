"""Feature extraction speed: all FSDD files, first run (both cores), cached run, and the content hashing
(SHA-256 of every file's bytes) that the cache key needs on every run.

Example:
    python benchmarks/feature_speed.py --data-dir ../shared/data/fsdd/recordings
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from scnn.data import list_fsdd, locate_fsdd
from scnn.features import content_digest, extract_features, feature_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--preset", default="default")
    args = parser.parse_args()
    paths = [r.path for r in list_fsdd(locate_fsdd(args.data_dir, download=False))]
    config = feature_config(args.preset)
    extract_features(paths[:50], config, workers=1, progress=False)  # warm-up: librosa's numba compilation
    with tempfile.TemporaryDirectory() as cache:
        for workers in (1, os.cpu_count()):
            start = time.perf_counter()
            extract_features(paths, config, workers=workers, progress=False)
            print(f"{len(paths)} files, preset {args.preset}, {workers} worker(s), no cache: "
                  f"{time.perf_counter() - start:.1f} s", flush=True)
        extract_features(paths, config, cache_dir=cache, progress=False)
        start = time.perf_counter()
        result = extract_features(paths, config, cache_dir=cache, progress=False)
        assert result.from_cache
        print(f"{len(paths)} files, cached: {time.perf_counter() - start:.3f} s (hashing included)")
    size = sum(os.path.getsize(path) for path in paths)
    start = time.perf_counter()
    for path in paths:
        content_digest(path)
    elapsed = time.perf_counter() - start
    print(f"{len(paths)} files, {size / 1e6:.1f} MB, SHA-256 of their bytes: {elapsed:.3f} s "
          f"({size / elapsed / 1e6:.0f} MB/s, {1e6 * elapsed / len(paths):.0f} us per file)")


if __name__ == "__main__":
    main()
