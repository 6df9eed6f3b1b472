"""Speed of the multi-step engine against the reference code's step-by-step loop.

For Models A and B at T in {1, 10, 25} and batch 16 and 128 (``--quick``: T = 10,
batch 16 only), on random inputs ``[B, 1, 32, 32]`` and the same weights, it times:

* training: forward, cross-entropy on the logits, backward, SGD step;
* inference: forward under ``torch.inference_mode``, the engine with its compiled
  binary-spike kernels (the default, :mod:`scnn.engine`) and, reported separately, with
  them switched off (``fast_inference(enabled=False)``: the torch path).

Reference (``scnn.models.reference.ReferenceNet``, sharing the parameters) and engine runs
are interleaved, repetition by repetition, and the speed-up is the median of the
per-repetition ratios, so load from other processes hits both alike. Also:

* peak training memory: each engine runs a few training steps in a fresh subprocess
  with ``MALLOC_MMAP_THRESHOLD_=65536`` (large buffers come from mmap and go back to
  the OS when freed, so the resident size follows live memory); the peak resident set
  (``VmHWM``) is reset after the set-up (model, data) and one untimed training step
  (gradients, optimiser state, lazily loaded code, library workspaces), and the figure is
  its growth over three training steps: activations, tensors saved for backward and
  temporaries;
* achieved GFLOP/s of the engine's training step (useful conv/linear FLOPs only:
  forward, input gradients where needed, weight gradients) against a plain float32
  matmul on this CPU;
* a torch.profiler summary of the top operations of engine training (T = 10, b16).

Results: the "engine" table OUT/bench_engine.csv (its sidecar bench_engine.json holds the
machine) and, where measured, bench_engine_epochs.csv, bench_engine_profile.csv,
bench_engine_trained.csv, bench_engine_trained_profile.csv and (``--crossover``)
bench_engine_crossover.csv: see docs/results_formats.md and :mod:`scnn.result_tables`.

    python benchmarks/bench_engine.py --quick --out runs/bench_engine
    python benchmarks/bench_engine.py --out runs/bench_engine          # full grid, ~10 min
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scnn.engine import fast_inference, keep_freed_memory  # noqa: E402
from scnn.models import create_model  # noqa: E402
from scnn.models.reference import ReferenceNet  # noqa: E402
from scnn.result_tables import write_table  # noqa: E402


def build(model_name: str, num_steps: int, batch_size: int, seed: int = 0):
    """Engine model, its reference twin (same parameters), inputs [B, 1, 32, 32] and labels."""
    torch.manual_seed(seed)
    model = create_model(model_name, num_steps=num_steps)
    inputs = torch.randn(batch_size, 1, 32, 32) * 2
    labels = torch.randint(0, 10, (batch_size,))
    return model, ReferenceNet(model), inputs, labels


def training_step(network: nn.Module, optimizer: torch.optim.Optimizer, inputs, labels) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(network(inputs).logits, labels)
    loss.backward()
    optimizer.step()


def inference_step(network: nn.Module, inputs, kernels: bool = True) -> None:
    with torch.inference_mode(), fast_inference(enabled=kernels):
        network(inputs)


def interleaved(functions: dict, repeats: int, warmup: int = 2) -> dict:
    """Seconds per call of each function, interleaved call by call; returns all samples."""
    samples = {name: [] for name in functions}
    for repeat in range(warmup + repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            elapsed = time.perf_counter() - start
            if repeat >= warmup:
                samples[name].append(elapsed)
    return samples


def median_ratio(reference: list, candidate: list) -> float:
    return statistics.median(r / c for r, c in zip(reference, candidate))


# --------------------------------------------------------------------------- FLOPs


def training_flops(model: nn.Module, inputs: torch.Tensor) -> tuple[float, float]:
    """(forward, training) FLOPs of one engine batch, conv/linear only, 2 per MAC.

    Forward: first synapse once (static input hoisted), the rest T times. Training adds
    the weight gradient of every layer (as many MACs as its forward) and the input
    gradient of every layer but the first (input needs none).
    """
    macs = []

    def hook(module, args, output):
        if isinstance(module, nn.Conv2d):
            kernel = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            macs.append(output.numel() * kernel)
        elif isinstance(module, nn.Linear):
            macs.append(output.numel() * module.in_features)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(inputs)
    for handle in handles:
        handle.remove()
    forward = 2.0 * sum(macs)
    training = forward + forward + 2.0 * sum(macs[1:])
    return forward, training


def matmul_gflops(size: int = 1024, repeats: int = 20) -> float:
    """Peak-ish float32 GFLOP/s of a square matmul on this CPU (median of repeats)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2.0 * size**3 / statistics.median(times) / 1e9


# --------------------------------------------------------------------------- memory


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _memory_child(model_name: str, num_steps: int, batch_size: int, engine: str, threads: int) -> None:
    torch.set_num_threads(threads)
    model, reference, inputs, labels = build(model_name, num_steps, batch_size)
    network = model if engine == "engine" else reference
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    # One untimed step first: it loads code and imports lazily, JIT-compiles oneDNN kernels and
    # sizes library workspaces, one-time costs that differ between the two paths and are not
    # training memory. It also allocates the gradients and the momentum.
    training_step(network, optimizer, inputs, labels)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set (VmHWM) to now
    baseline = _status_kib("VmRSS")
    for _ in range(3):
        training_step(network, optimizer, inputs, labels)
    peak = _status_kib("VmHWM")
    print(json.dumps({"peak_growth_mib": (peak - baseline) / 1024}))


def training_memory_mib(model_name: str, num_steps: int, batch_size: int, engine: str, threads: int) -> float:
    environment = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    command = [sys.executable, __file__, "--memory-child", model_name, str(num_steps), str(batch_size), engine,
               "--threads", str(threads)]
    output = subprocess.run(command, capture_output=True, text=True, env=environment, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])["peak_growth_mib"]


# --------------------------------------------------------------------------- profile


def profile_training(model_name: str, steps: int = 10, top: int = 10) -> list[dict]:
    """Top operations (self CPU time) of engine training at T = 10, batch 16."""
    from torch.profiler import ProfilerActivity, profile

    model, _, inputs, labels = build(model_name, 10, 16)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    for _ in range(3):
        training_step(model, optimizer, inputs, labels)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(steps):
            training_step(model, optimizer, inputs, labels)
    events = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [{"op": e.key, "self_ms_per_step": e.self_cpu_time_total / 1e3 / steps,
             "share": e.self_cpu_time_total / total, "calls_per_step": e.count / steps} for e in events[:top]]


# --------------------------------------------------------------------------- an FSDD-sized epoch


def epoch_seconds(model_name: str, samples: int = 2430, batch_size: int = 32, num_steps: int = 10) -> dict:
    """Seconds of one training epoch of ``experiments/train.py``'s defaults (AdamW, batch 32,
    T = 10) over FSDD's 2,430 training recordings (random features of the same shape), for
    the reference loop and then the engine; they share the parameters and the optimiser, so
    the engine's epoch starts from the weights the reference's epoch left."""
    torch.manual_seed(0)
    model = create_model(model_name, num_steps=num_steps)
    reference = ReferenceNet(model)
    inputs, labels = torch.randn(samples, 1, 32, 32) * 2, torch.randint(0, 10, (samples,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    result = {}
    for name, network in (("reference", reference), ("engine", model)):
        training_step(network, optimizer, inputs[:batch_size], labels[:batch_size])  # warm-up
        start = time.perf_counter()
        for first in range(0, samples, batch_size):
            training_step(network, optimizer, inputs[first:first + batch_size], labels[first:first + batch_size])
        result[name] = time.perf_counter() - start
    return result


# --------------------------------------------------------------------------- CSR crossover


def csr_crossover(sizes=((5400, 128), (12544, 128)), densities=(0.01, 0.05, 0.1, 0.15, 0.2, 0.3),
                  rows: int = 160, repeats: int = 30) -> list[dict]:
    """Milliseconds of a LIF feeding a dense layer, fused with the CSR product
    (``lif_csr_linear``) against the LIF kernel and the dense product, by spike density:
    the measurement behind ``max_density`` (rows = T * B = 160, Model A/B layer sizes)."""
    from scnn.engine import kernels as spike_kernels

    results = []
    threshold, beta = torch.tensor(1.0), torch.tensor(0.0)  # beta 0: spikes = current > 1, density set directly
    for inputs, outputs in sizes:
        linear = nn.Linear(inputs, outputs)
        for density in densities:
            current = (torch.rand(10, rows // 10, inputs) < density).float() * 2  # 2 > threshold: a spike
            with torch.inference_mode():
                def dense():
                    spikes, _ = spike_kernels.lif_spikes(current, beta, threshold, False)
                    return linear(spikes)

                def fused():
                    return spike_kernels.lif_csr_linear(current, beta, threshold, False, linear.weight, linear.bias, 1.0)
                times = interleaved({"dense": dense, "csr": fused}, repeats)
            results.append({"inputs": inputs, "outputs": outputs, "density": density,
                            "dense_ms": 1e3 * statistics.median(times["dense"]),
                            "csr_ms": 1e3 * statistics.median(times["csr"])})
    return results


# --------------------------------------------------------------------------- trained models


def profile_inference(model: nn.Module, inputs: torch.Tensor, calls: int = 50, top: int = 8) -> list[dict]:
    """Where one inference forward spends its time, by Python-level function (cProfile sees
    the compiled kernels and torch's operators alike; torch.profiler does not see numba)."""
    import cProfile
    import pstats

    with torch.inference_mode():
        model(inputs)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(calls):
            model(inputs)
        profiler.disable()
    stats = pstats.Stats(profiler).stats  # (file, line, name) -> (calls, _, own time, cumulative, _)
    rows = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:top]
    return [{"function": name if file.startswith("~") else f"{Path(file).name}:{name}",
             "own_ms_per_forward": 1e3 * own / calls}
            for (file, _, name), (_, _, own, _, _) in rows]



def trained_inference(checkpoint: Path, data_dir: str | None, repeats: int, batch_size: int = 16) -> dict:
    """Inference on a trained checkpoint's FSDD test set in batches of 16: reference loop,
    engine with its kernels and engine's torch path, interleaved batch by batch; the spike
    density of every layer and the test accuracy of each path (they must agree)."""
    from scnn.data import checkpoint_data
    from scnn.train import load_trained_model

    model, saved = load_trained_model(checkpoint)
    reference = ReferenceNet(model)
    test_x, test_y = checkpoint_data(saved, {"data_dir": data_dir}).test
    batches = [test_x[i:i + batch_size] for i in range(0, len(test_x) - batch_size + 1, batch_size)]
    paths = {"reference": (reference, True), "engine": (model, True), "engine_torch": (model, False)}
    with torch.inference_mode():
        correct = {}
        for name, (network, kernels) in paths.items():
            with fast_inference(enabled=kernels):
                correct[name] = int((network(test_x).logits.argmax(1) == test_y).sum())
        densities = [round(float(s.mean()), 4) for s in model(test_x, record=True).layer_spikes]
    times = {name: [] for name in paths}
    for _ in range(repeats):
        for batch in batches:
            for name, (network, kernels) in paths.items():
                start = time.perf_counter()
                inference_step(network, batch, kernels)
                times[name].append(time.perf_counter() - start)
    profile = profile_inference(model, batches[0])
    return {"checkpoint": str(checkpoint), "test_samples": len(test_x), "correct": correct, "profile": profile,
            "spike_density": densities,
            "infer_ref_samples_s": batch_size / statistics.median(times["reference"]),
            "infer_engine_samples_s": batch_size / statistics.median(times["engine"]),
            "infer_speedup": median_ratio(times["reference"], times["engine"]),
            "infer_torch_speedup": median_ratio(times["reference"], times["engine_torch"])}


# --------------------------------------------------------------------------- main


def measure(model_name: str, num_steps: int, batch_size: int, repeats: int, threads: int, memory: bool) -> dict:
    model, reference, inputs, labels = build(model_name, num_steps, batch_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    train = interleaved({
        "reference": lambda: training_step(reference, optimizer, inputs, labels),
        "engine": lambda: training_step(model, optimizer, inputs, labels),
    }, repeats)
    infer = interleaved({
        "reference": lambda: inference_step(reference, inputs),
        "engine": lambda: inference_step(model, inputs),
        "engine_torch": lambda: inference_step(model, inputs, kernels=False),
    }, repeats)
    with torch.no_grad():
        densities = [float(s.mean()) for s in model(inputs, record=True).layer_spikes]
    _, flops = training_flops(model, inputs)
    engine_train_s = statistics.median(train["engine"])
    row = {
        "model": model_name, "num_steps": num_steps, "batch_size": batch_size,
        "train_ref_samples_s": batch_size / statistics.median(train["reference"]),
        "train_engine_samples_s": batch_size / engine_train_s,
        "train_speedup": median_ratio(train["reference"], train["engine"]),
        "infer_ref_samples_s": batch_size / statistics.median(infer["reference"]),
        "infer_engine_samples_s": batch_size / statistics.median(infer["engine"]),
        "infer_speedup": median_ratio(infer["reference"], infer["engine"]),
        "infer_torch_speedup": median_ratio(infer["reference"], infer["engine_torch"]),
        "train_engine_gflops": flops / engine_train_s / 1e9,
        "spike_density": [round(d, 4) for d in densities],
    }
    row["train_mem_ref_mib"] = row["train_mem_engine_mib"] = None  # not measured (blank in the table)
    if memory:
        row["train_mem_ref_mib"] = training_memory_mib(model_name, num_steps, batch_size, "reference", threads)
        row["train_mem_engine_mib"] = training_memory_mib(model_name, num_steps, batch_size, "engine", threads)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only T=10, batch 16; fewer repeats")
    parser.add_argument("--models", nargs="+", default=["model_b", "model_a"])
    parser.add_argument("--steps", nargs="+", type=int, default=[1, 10, 25])
    parser.add_argument("--batches", nargs="+", type=int, default=[16, 128])
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions (default 9, quick 7)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-memory", action="store_true", help="skip the subprocess memory measurement")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--no-epoch", action="store_true", help="skip the FSDD-sized epoch of each model")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_engine"))
    parser.add_argument("--crossover", action="store_true",
                        help="only time the fused CSR product against the dense one by spike density")
    parser.add_argument("--checkpoints", nargs="*", type=Path, default=[],
                        help="trained checkpoints (best.pt) whose FSDD test set is run at batch 16 too")
    parser.add_argument("--data-dir", default=None, help="FSDD recordings for --checkpoints (default: as trained)")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's malloc thresholds alone (train() raises them, see "
                             "scnn.engine.keep_freed_memory; both sides of every ratio share the setting)")
    parser.add_argument("--memory-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        name, steps, batch, engine = args.memory_child
        _memory_child(name, int(steps), int(batch), engine, args.threads)
        return
    kept_freed_memory = False if args.default_malloc else keep_freed_memory()
    print(f"malloc keeps freed memory (scnn.engine.keep_freed_memory): {kept_freed_memory}")
    if args.crossover:
        print(f"{'layer':>12} {'density':>7} {'LIF + dense':>11} {'LIF + CSR':>9} ms")
        rows = csr_crossover()
        for row in rows:
            print(f"{row['inputs']:>6}x{row['outputs']:<5} {row['density']:7.2f} {row['dense_ms']:11.3f} "
                  f"{row['csr_ms']:9.3f}", flush=True)
        path = write_table(rows, args.out / "bench_engine_crossover.csv", "engine_crossover",
                           {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                                        "threads": args.threads, "torch": torch.__version__}, "argv": sys.argv})
        print(f"\nwrote {path}")
        return
    if args.quick:
        args.steps, args.batches = [10], [16]
    repeats = args.repeats or (7 if args.quick else 9)

    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": args.threads,
               "torch": torch.__version__, "load_average_start": os.getloadavg()}
    peak = matmul_gflops()
    machine["matmul_gflops"] = peak
    machine["keep_freed_memory"] = kept_freed_memory
    print(f"torch {torch.__version__}, {args.threads} threads, load average {machine['load_average_start']}, "
          f"float32 1024^3 matmul {peak:.1f} GFLOP/s")
    rows = []
    header = (f"{'model':8} {'T':>3} {'B':>4} | {'train ref':>9} {'engine':>8} {'ratio':>6} | {'infer ref':>9} "
              f"{'engine':>8} {'ratio':>6} {'torch':>6} | {'GFLOP/s':>7} {'%mm':>4} | {'mem ref':>7} {'engine':>7} MiB")
    print(header)
    for name in args.models:
        for steps in args.steps:
            for batch in args.batches:
                memory = not args.no_memory and (steps == 10 or args.quick)
                row = measure(name, steps, batch, repeats, args.threads, memory)
                rows.append(row)
                memory_text = (f"{row['train_mem_ref_mib']:7.1f} {row['train_mem_engine_mib']:7.1f}"
                               if memory else f"{'-':>7} {'-':>7}")
                print(f"{name:8} {steps:3d} {batch:4d} | {row['train_ref_samples_s']:9.1f} "
                      f"{row['train_engine_samples_s']:8.1f} {row['train_speedup']:6.2f} | "
                      f"{row['infer_ref_samples_s']:9.1f} {row['infer_engine_samples_s']:8.1f} "
                      f"{row['infer_speedup']:6.2f} {row['infer_torch_speedup']:6.2f} | "
                      f"{row['train_engine_gflops']:7.1f} {100 * row['train_engine_gflops'] / peak:4.0f} | {memory_text}"
                      f"   density {row['spike_density']}", flush=True)
    trained = []
    for checkpoint in args.checkpoints:
        row = trained_inference(checkpoint, args.data_dir, repeats=3)
        trained.append(row)
        print(f"\ntrained {checkpoint}: inference {row['infer_ref_samples_s']:.0f} -> "
              f"{row['infer_engine_samples_s']:.0f} samples/s, {row['infer_speedup']:.2f}x "
              f"(torch path {row['infer_torch_speedup']:.2f}x); test correct {row['correct']}, "
              f"density {row['spike_density']}", flush=True)
        print("  one forward (batch 16) by function, own ms: " + ", ".join(
            f"{entry['function']} {entry['own_ms_per_forward']:.2f}" for entry in row["profile"]))
    epochs = {}
    if not args.no_epoch:
        print(f"\none FSDD-sized training epoch (2,430 samples, batch 32, AdamW, T = 10), seconds:")
        for name in args.models:
            epochs[name] = epoch_seconds(name)
            print(f"  {name}: reference {epochs[name]['reference']:.2f} s, engine {epochs[name]['engine']:.2f} s "
                  f"({epochs[name]['reference'] / epochs[name]['engine']:.2f}x)", flush=True)
    profiles = {}
    if not args.no_profile:
        for name in args.models:
            profiles[name] = profile_training(name)
            print(f"\nprofile, engine training {name} T=10 b16 (self CPU ms per step):")
            for entry in profiles[name]:
                print(f"  {entry['op']:45} {entry['self_ms_per_step']:7.2f} ms {100 * entry['share']:5.1f} %"
                      f"  {entry['calls_per_step']:6.0f} calls")
    machine["load_average_end"] = os.getloadavg()
    write_tables(args.out, {"machine": machine, "argv": sys.argv}, rows, trained, epochs, profiles)


def write_tables(out: Path, metadata: dict, rows: list[dict], trained: list[dict], epochs: dict,
                 profiles: dict) -> None:
    """Every measurement as a results table (scnn.result_tables; docs/results_formats.md), each CSV with
    its sidecar holding ``metadata`` (the machine, the command line). Tables with no rows are not written."""
    tables = {
        "bench_engine": ("engine", rows),
        "bench_engine_epochs": ("engine_epoch", [{"model": name, "reference_s": seconds["reference"],
                                                  "engine_s": seconds["engine"]} for name, seconds in epochs.items()]),
        "bench_engine_profile": ("engine_profile", [{"model": name, **entry} for name, entries in profiles.items()
                                                    for entry in entries]),
        "bench_engine_trained": ("engine_trained", [
            {"checkpoint": row["checkpoint"], "test_samples": row["test_samples"],
             "correct_reference": row["correct"]["reference"], "correct_engine": row["correct"]["engine"],
             "correct_engine_torch": row["correct"]["engine_torch"],
             **{key: row[key] for key in ("spike_density", "infer_ref_samples_s", "infer_engine_samples_s",
                                          "infer_speedup", "infer_torch_speedup")}} for row in trained]),
        "bench_engine_trained_profile": ("engine_trained_profile", [
            {"checkpoint": row["checkpoint"], **entry} for row in trained for entry in row["profile"]]),
    }
    written = [write_table(table_rows, out / f"{name}.csv", table, metadata)
               for name, (table, table_rows) in tables.items() if table_rows]
    print(f"\nwrote {', '.join(str(path) for path in written)} (each with its .json sidecar)")


if __name__ == "__main__":
    main()
