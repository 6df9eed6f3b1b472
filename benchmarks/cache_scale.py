"""The sharded feature cache at the scale of Speech Commands: files per second to build it, the start of a
run that finds it built, and the time to read an epoch's batches from it (and to train on them).

A synthetic set of the real format (1-s 16 kHz tones with noise, scnn.data.fixtures.write_tone) is written
once under --work; the Speech Commands recipes' features (40 MFCCs x 50 frames, configs/gsc35_cnn.yaml).

    OMP_NUM_THREADS=1 python benchmarks/cache_scale.py --files 20000 --threads 1 --work /tmp/cache_scale \
        --out runs/cache_scale

Writes the "cache_scale" table (scnn.result_tables, docs/results_formats.md): OUT/cache_scale.csv, one row for
the run, and its sidecar OUT/cache_scale.json; prints the same row as one JSON object: build_files_per_s (extraction and shard writing, cold), warm_start_s (a second
call: every file's SHA-256 plus opening the memory-mapped shards) and hash_s (the digests alone),
read_s_per_10k (an epoch's random-order batches of 64 gathered from the shards and normalised, per 10,000
samples), split_file_s and mapped_read_s_per_10k (prepare_data's way for such sets: the split normalised once
into a memory-mapped file, then an epoch's random batches indexed from that tensor), train_s_per_10k (gsc35_cnn forward, backward and AdamW step on such batches, from
--train-batches batches; 0 skips it), peak_rss_mb_before_training (this process's peak resident memory
while building, hashing and reading, mapped file pages included), rss_anon_mb_after_reading and
rss_file_mb_after_reading (/proc/self/status: memory the process holds itself, and mapped file pages the
kernel may drop), cache_mb.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scnn.data.fixtures import write_tone  # noqa: E402
from scnn.features.cache import SHARD_FILES, content_digests, mapped_rows, sharded_features  # noqa: E402
from scnn.features.normalize import Normalizer  # noqa: E402
from scnn.features.mfcc import feature_config  # noqa: E402
from scnn.result_tables import write_table  # noqa: E402

GSC_FEATURES = dict(sample_rate=16000, n_fft=640, hop_length=320, n_mels=40, n_mfcc=40, num_frames=50, top_db=None)


def write_set(folder: Path, count: int, seconds: float) -> list[str]:
    """``count`` WAVs (kept between runs: only the missing ones are written), 35 word folders as the release."""
    paths = []
    for i in range(count):
        path = folder / f"word{i % 35:02d}" / f"{i:06d}.wav"
        if not path.exists():
            write_tone(path, 200.0 + 40.0 * (i % 35) + (i // 35) % 50, seed=i, seconds=seconds, rate=16000)
        paths.append(str(path))
    return sorted(paths)


def memory_now() -> dict[str, float]:
    """This process's resident memory now, in MB: RssAnon (its own, what holding features costs) and RssFile
    (pages of mapped files: the page cache, which the kernel may drop); Linux only, else empty."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return {}
    values = {}
    for line in lines:
        name, _, rest = line.partition(":")
        if name in ("RssAnon", "RssFile"):
            values[name] = round(int(rest.split()[0]) / 1024, 1)
    return values


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each clip (Speech Commands: 1 s)")
    parser.add_argument("--threads", type=int, default=1, help="extraction processes, hashing threads, torch threads")
    parser.add_argument("--shard-size", type=int, default=SHARD_FILES)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--train-batches", type=int, default=10, help="batches timed for train_s_per_10k (0: skip)")
    parser.add_argument("--work", default="/tmp/scnn_cache_scale", help="folder of the WAVs and the cache")
    parser.add_argument("--out", default="runs/cache_scale", help="folder of the cache_scale table")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    started = time.perf_counter()
    paths = write_set(work / "wav", args.files, args.seconds)
    written_s = time.perf_counter() - started
    config = feature_config("default", **GSC_FEATURES)
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)

    started = time.perf_counter()
    sharded_features(paths, config, cache, workers=args.threads, progress=False, shard_size=args.shard_size)
    build_s = time.perf_counter() - started

    started = time.perf_counter()
    content_digests(paths, args.threads)
    hash_s = time.perf_counter() - started
    started = time.perf_counter()
    result = sharded_features(paths, config, cache, workers=args.threads, progress=False, shard_size=args.shard_size)
    warm_s = time.perf_counter() - started
    assert result.from_cache

    features = result.features
    mean = np.zeros(config.shape[0], np.float32)[:, None]  # a normaliser's work per batch, whatever its values
    std = np.ones(config.shape[0], np.float32)[:, None]
    order = np.random.default_rng(0).permutation(len(features))
    started = time.perf_counter()
    checksum = 0.0
    for start in range(0, len(order), args.batch_size):
        batch = torch.from_numpy((features[order[start:start + args.batch_size]] - mean) / std).unsqueeze(1)
        checksum += float(batch[:, 0, 0, 0].sum())
    read_s = time.perf_counter() - started
    # What prepare_data does for such sets: the split normalised once into a mapped file, then an epoch of
    # random batches read from that tensor (as fit() reads train_x[index]).
    normalizer = Normalizer(np.zeros(config.shape[0], np.float32), np.ones(config.shape[0], np.float32))
    started = time.perf_counter()
    mapped = mapped_rows(features, order, normalizer)
    split_s = time.perf_counter() - started
    index = torch.from_numpy(np.random.default_rng(1).permutation(len(mapped)))
    started = time.perf_counter()
    for start in range(0, len(index), args.batch_size):
        checksum += float(mapped[index[start:start + args.batch_size]][:, 0, 0, 0].sum())
    mapped_read_s = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak so far: building, hashing, reading
    memory = memory_now()

    train_s_per_10k = None
    if args.train_batches:
        from scnn.models import create_model
        from scnn.train.losses import make_loss

        torch.manual_seed(0)
        model = create_model("gsc35_cnn", input_shape=(1, *config.shape), num_classes=35)
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
        loss_fn = make_loss("ce_membrane")
        labels = torch.arange(args.batch_size) % 35
        batch = torch.from_numpy(features[order[:args.batch_size]]).unsqueeze(1)
        model.train()
        for step in range(args.train_batches + 1):  # the first step warms up, untimed
            if step == 1:
                started = time.perf_counter()
            loss = loss_fn(model(batch), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        train_s_per_10k = (time.perf_counter() - started) / (args.train_batches * args.batch_size) * 10_000

    report = {
        "files": len(paths), "clip_seconds": args.seconds, "threads": args.threads, "shard_size": args.shard_size,
        "shards": len(features.shards), "feature_shape": list(config.shape), "wav_write_s": round(written_s, 2),
        "build_s": round(build_s, 2), "build_files_per_s": round(len(paths) / build_s, 1),
        "hash_s": round(hash_s, 2), "warm_start_s": round(warm_s, 2),
        "read_s_per_10k": round(read_s / len(paths) * 10_000, 3),
        "split_file_s": round(split_s, 2), "mapped_read_s_per_10k": round(mapped_read_s / len(paths) * 10_000, 3),
        "train_s_per_10k": None if train_s_per_10k is None else round(train_s_per_10k, 1),
        "peak_rss_mb_before_training": round(rss_mb, 1),
        "rss_anon_mb_after_reading": memory.get("RssAnon"), "rss_file_mb_after_reading": memory.get("RssFile"),
        "cache_mb": round(sum(p.stat().st_size for p in cache.rglob("*")) / 2**20, 1),
    }
    write_table([report], Path(args.out) / "cache_scale.csv", "cache_scale",
                {"argv": list(sys.argv[1:] if argv is None else argv), "work": str(work)})
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
