"""Speed of the spiking engine against the reference code's step-by-step loop, in the same run.

For Models A and B, T in {1, 10, 25} and batch sizes 16 and 128, it measures training
steps (forward, membrane cross-entropy, backward, Adam step) and inference (forward
only) of:
    reference  every layer at every step, snntorch.Leaky per step (scnn.reference.ReferenceNet)
    scnn       time folded into the batch, first layer once, fused LIF sequence
on the same weights and the same random batch. Repetitions alternate between the two
and the median is reported, so load from other processes hits both alike; the ratios
are the result. Peak training memory is the growth of the process's maximum resident
set size over a few training steps, each variant measured in a fresh subprocess.
Example:
    python benchmarks/bench_engine.py --threads 2 --out runs/bench_engine          # ~10 minutes
    python benchmarks/bench_engine.py --quick                                        # ~1 minute
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from scnn.losses import make_loss
from scnn.metrics import dense_macs
from scnn.models import create_model
from scnn.reference import ReferenceNet


def make_pair(name: str, steps: int, seed: int = 0):
    torch.manual_seed(seed)
    model = create_model(name, num_steps=steps)
    return model, ReferenceNet(model)


def train_step(model, forward, optimizer, loss_fn, x, y):
    output = forward(x)
    loss = loss_fn(output, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def time_once(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def measure(name: str, steps: int, batch: int, repeats: int) -> dict:
    """Median seconds per training step and per inference batch, reference and scnn alternating."""
    model, reference = make_pair(name, steps)
    x, y = torch.randn(batch, 1, 32, 32), torch.randint(0, 10, (batch,))
    loss_fn = make_loss("ce_membrane")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-6)  # tiny lr: weights barely move
    variants = {"reference": reference, "scnn": model}
    train_times = {key: [] for key in variants}
    infer_times = {key: [] for key in variants}
    for key, forward in variants.items():  # warm-up
        train_step(model, forward, optimizer, loss_fn, x, y)
    for _ in range(repeats):
        for key, forward in variants.items():
            model.train()
            train_times[key].append(time_once(lambda: train_step(model, forward, optimizer, loss_fn, x, y)))
            model.eval()
            with torch.no_grad():
                infer_times[key].append(time_once(lambda: forward(x)))
    row = {"model": name, "T": steps, "batch": batch}
    for key in variants:
        row[f"{key}_train_samples_per_s"] = batch / statistics.median(train_times[key])
        row[f"{key}_infer_samples_per_s"] = batch / statistics.median(infer_times[key])
    row["train_speedup"] = row["scnn_train_samples_per_s"] / row["reference_train_samples_per_s"]
    row["infer_speedup"] = row["scnn_infer_samples_per_s"] / row["reference_infer_samples_per_s"]
    macs = dense_macs(model, (1, 32, 32))["as_executed"]
    # Training costs about three forward passes (forward, gradient wrt inputs, wrt weights).
    row["scnn_train_gflops"] = 3 * 2 * macs * row["scnn_train_samples_per_s"] / 1e9
    return row


def peak_memory_child(name: str, steps: int, batch: int, variant: str) -> None:
    """Run in a subprocess: print the growth of max RSS (bytes) over 3 training steps."""
    model, reference = make_pair(name, steps)
    forward = reference if variant == "reference" else model
    x, y = torch.randn(batch, 1, 32, 32), torch.randint(0, 10, (batch,))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-6)
    loss_fn = make_loss("ce_membrane")
    optimizer.zero_grad()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(3):
        train_step(model, forward, optimizer, loss_fn, x, y)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_growth_bytes": (after - before) * 1024}))


def peak_memory(name: str, steps: int, batch: int, variant: str, threads: int) -> int:
    command = [sys.executable, __file__, "--memory-child", name, str(steps), str(batch), variant,
               "--threads", str(threads)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])["peak_growth_bytes"]


def matmul_gflops(size: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    times = [time_once(lambda: torch.mm(a, b)) for _ in range(repeats)]
    return 2 * size ** 3 / statistics.median(times) / 1e9


def profile_training(name: str, steps: int = 10, batch: int = 16, top: int = 8) -> list[dict]:
    """Top operators by self CPU time in a few scnn training steps."""
    from torch.profiler import ProfilerActivity, profile

    model, _ = make_pair(name, steps)
    x, y = torch.randn(batch, 1, 32, 32), torch.randint(0, 10, (batch,))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-6)
    loss_fn = make_loss("ce_membrane")
    train_step(model, model, optimizer, loss_fn, x, y)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(5):
            train_step(model, model, optimizer, loss_fn, x, y)
    events = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [{"op": e.key, "self_cpu_share": e.self_cpu_time_total / total, "calls": e.count} for e in events[:top]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="T = 10 and batch 16 only, fewer repeats")
    parser.add_argument("--out", default="runs/bench_engine")
    parser.add_argument("--memory-child", nargs=4, metavar=("MODEL", "T", "BATCH", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        name, steps, batch, variant = args.memory_child
        peak_memory_child(name, int(steps), int(batch), variant)
        return

    grid = [(name, steps, batch) for name in ("model_b", "model_a") for steps in (1, 10, 25) for batch in (16, 128)]
    if args.quick:
        grid = [(name, 10, 16) for name in ("model_b", "model_a")]
        args.repeats = 3
    rows = []
    header = (f"{'model':8s} {'T':>3s} {'batch':>5s} | {'train ref':>9s} {'scnn':>8s} {'ratio':>6s} | "
              f"{'infer ref':>9s} {'scnn':>8s} {'ratio':>6s}   (samples/s)")
    print(header, flush=True)
    for name, steps, batch in grid:
        row = measure(name, steps, batch, args.repeats)
        rows.append(row)
        print(f"{name:8s} {steps:3d} {batch:5d} | {row['reference_train_samples_per_s']:9.1f} "
              f"{row['scnn_train_samples_per_s']:8.1f} {row['train_speedup']:5.2f}x | "
              f"{row['reference_infer_samples_per_s']:9.1f} {row['scnn_infer_samples_per_s']:8.1f} "
              f"{row['infer_speedup']:5.2f}x", flush=True)
    memory = []
    for name in ("model_b", "model_a"):
        for batch in (16, 128) if not args.quick else (16,):
            entry = {"model": name, "T": 10, "batch": batch}
            for variant in ("reference", "scnn"):
                entry[f"{variant}_peak_growth_mb"] = peak_memory(name, 10, batch, variant, args.threads) / 2**20
            memory.append(entry)
            print(f"peak training memory growth {name} T=10 batch {batch}: reference "
                  f"{entry['reference_peak_growth_mb']:.1f} MB, scnn {entry['scnn_peak_growth_mb']:.1f} MB", flush=True)
    gflops = matmul_gflops()
    print(f"plain float32 matmul (1024x1024): {gflops:.1f} GFLOP/s", flush=True)
    epochs = {row["model"]: {"reference_s_per_epoch": 2700 / row["reference_train_samples_per_s"],
                             "scnn_s_per_epoch": 2700 / row["scnn_train_samples_per_s"],
                             "scnn_share_of_matmul_peak": row["scnn_train_gflops"] / gflops}
              for row in rows if row["T"] == 10 and row["batch"] == 16}
    for name, entry in epochs.items():
        print(f"{name} T=10 batch 16: {entry['reference_s_per_epoch']:.1f} s/epoch reference, "
              f"{entry['scnn_s_per_epoch']:.1f} s/epoch scnn (2,700 samples, training steps only); "
              f"scnn reaches {100 * entry['scnn_share_of_matmul_peak']:.0f} % of the matmul GFLOP/s", flush=True)
    profiles = {name: profile_training(name) for name in ("model_b", "model_a")}
    for name, top in profiles.items():
        print(f"where scnn's training time goes ({name}, T=10, batch 16):")
        for entry in top:
            print(f"    {100 * entry['self_cpu_share']:5.1f} %  {entry['op']}  ({entry['calls']} calls)")
    result = {"machine": platform.platform(), "processor": platform.processor(), "threads": args.threads,
              "torch": torch.__version__, "rows": rows, "memory": memory, "matmul_gflops": gflops,
              "epochs": epochs, "profiles": profiles}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "bench_engine.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
