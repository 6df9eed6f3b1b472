"""Speed of the fused RLeaky, Synaptic and ALIF sequences against their step loops.

Each case is timed in two forms sharing the same parameters, interleaved repetition by
repetition in one process (the speed-up is the median of the per-repetition ratios, so load
from other processes hits both alike):

* fused: the neurons' default engine (:mod:`scnn.engine.recurrent`; Leaky neurons their
  :class:`~scnn.engine.lif.FusedLeakySequence` and, in inference, their compiled kernels);
* reference: every neuron's step loop (``engine="loop"``: snntorch's own ``RLeaky`` /
  ``Synaptic`` module stepped T times; ALIF, which snntorch lacks, its own step equations;
  Leaky ``engine="snntorch"`` with the compiled inference kernels off).

Cases:

* one layer of each new neuron: ``Linear(64, 128)`` -> neuron (128, per-neuron learnable
  beta; ALIF also rho and b; RLeaky its recurrent weights) -> mean spikes over T ->
  ``Linear(128, 10)``, on random inputs ``[T, B, 64]``: ``rleaky_all_to_all``,
  ``rleaky_one_to_one``, ``synaptic``, ``alif``;
* the streaming presets end to end (``scnn.models.streaming``): ``streaming`` (ALIF) and
  ``streaming_rleaky``, on random features ``[B, 1, 20, 64]`` (T = 64 frames).

Training: forward, cross-entropy, backward, SGD step. Inference: forward under
``torch.inference_mode``. ``same_spikes``: both forms gave identical spikes in every layer
on the benchmark's input (a check, not a timing). Rows: the ``neuron_speed`` table,
OUT/bench_neurons.csv with its sidecar (docs/results_formats.md).

    python benchmarks/bench_neurons.py --quick --out runs/bench_neurons     # a check, ~1 min
    python benchmarks/bench_neurons.py --threads 2 --out runs/bench_neurons # the grid
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scnn.engine import fast_inference, keep_freed_memory  # noqa: E402
from scnn.models import create_model  # noqa: E402
from scnn.neurons import LIF, SpikingNeuron, create_neuron  # noqa: E402
from scnn.result_tables import write_table  # noqa: E402
from scnn.timing import interleaved, median_ratio  # noqa: E402

LAYER_CASES = {
    "rleaky_all_to_all": ("rleaky", {"all_to_all": True}),
    "rleaky_one_to_one": ("rleaky", {"all_to_all": False, "V": 0.5}),
    "synaptic": ("synaptic", {"alpha": 0.8, "learn_alpha": True}),
    "alif": ("alif", {"rho": 0.9, "adaptation": 0.5, "learn_adaptation": True}),
}
STREAMING_CASES = ("streaming", "streaming_rleaky")
INPUTS, SIZE, CLASSES = 64, 128, 10


class NeuronLayer(nn.Module):
    """Linear -> spiking neuron -> mean spikes over T -> Linear: one layer of ``neuron`` to time."""

    def __init__(self, neuron: SpikingNeuron):
        super().__init__()
        self.synapse, self.neuron, self.readout = nn.Linear(INPUTS, SIZE), neuron, nn.Linear(SIZE, CLASSES)

    def forward(self, x: torch.Tensor, record: bool = False):
        """x ``[T, B, INPUTS]`` -> logits ``[B, CLASSES]`` (and the spikes ``[T, B, SIZE]`` if ``record``)."""
        steps, batch = x.shape[:2]
        current = self.synapse(x.reshape(steps * batch, -1)).reshape(steps, batch, -1)
        spikes, _ = self.neuron(current, return_membrane=False)
        logits = self.readout(spikes.mean(0))
        return (logits, [spikes]) if record else logits


def build(case: str, num_steps: int, batch_size: int, seed: int = 0):
    """(model, inputs, labels, a function computing the logits, one returning every layer's spikes)."""
    torch.manual_seed(seed)
    labels = torch.randint(0, CLASSES, (batch_size,))
    if case in STREAMING_CASES:
        model = create_model(case)
        inputs = torch.randn(batch_size, *model.config.input_shape)
        return (model, inputs, labels, lambda: model(inputs).logits,
                lambda: model(inputs, record=True).layer_spikes)
    name, options = LAYER_CASES[case]
    layer_size = {"size": SIZE} if name == "rleaky" else {}  # recurrent weights need the layer's size
    neuron = create_neuron(name, beta=0.9, learn_beta=True, num_channels=SIZE, **layer_size, **options)
    model = NeuronLayer(neuron)
    inputs = torch.randn(num_steps, batch_size, INPUTS)
    return model, inputs, labels, lambda: model(inputs), lambda: model(inputs, record=True)[1]


def set_engine(model: nn.Module, fused: bool) -> None:
    """Every neuron on its fused engine, or on its step loop (Leaky: snntorch's loop)."""
    for module in model.modules():
        if isinstance(module, SpikingNeuron) and hasattr(module, "engine"):
            module.engine = "fused" if fused else ("snntorch" if isinstance(module, LIF) else "loop")


def reference_kind(case: str) -> str:
    return "step loop" if case in ("alif", "streaming") else "snntorch loop"


def measure(case: str, num_steps: int, batch_size: int, repeats: int) -> dict:
    model, inputs, labels, logits, spikes = build(case, num_steps, batch_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    steps = int(inputs.shape[0]) if case not in STREAMING_CASES else model.num_steps

    def train(fused: bool):
        set_engine(model, fused)
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(logits(), labels).backward()
        optimizer.step()

    def infer(fused: bool):
        set_engine(model, fused)
        with torch.inference_mode(), fast_inference(enabled=fused):
            logits()

    with torch.no_grad():
        set_engine(model, False)
        reference_spikes = spikes()
        set_engine(model, True)
        fused_spikes = spikes()
    same = len(fused_spikes) == len(reference_spikes) and all(
        torch.equal(a, b) for a, b in zip(fused_spikes, reference_spikes))
    training = interleaved({"reference": lambda: train(False), "fused": lambda: train(True)}, repeats)
    inference = interleaved({"reference": lambda: infer(False), "fused": lambda: infer(True)}, repeats)
    set_engine(model, True)
    return {
        "case": case, "reference": reference_kind(case), "num_steps": steps, "batch_size": batch_size,
        "train_ref_samples_s": batch_size / statistics.median(training["reference"]),
        "train_fused_samples_s": batch_size / statistics.median(training["fused"]),
        "train_speedup": median_ratio(training["reference"], training["fused"]),
        "infer_ref_samples_s": batch_size / statistics.median(inference["reference"]),
        "infer_fused_samples_s": batch_size / statistics.median(inference["fused"]),
        "infer_speedup": median_ratio(inference["reference"], inference["fused"]),
        "spike_density": [round(float(s.float().mean()), 4) for s in fused_spikes],
        "same_spikes": bool(same),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="T = 10 and batch 16 only, streaming at batch 16, "
                                                             "3 repetitions: a correctness check, not a timing")
    parser.add_argument("--cases", nargs="+", default=[*LAYER_CASES, *STREAMING_CASES],
                        choices=[*LAYER_CASES, *STREAMING_CASES])
    parser.add_argument("--steps", nargs="+", type=int, default=[10, 25, 100], help="T of the one-layer cases")
    parser.add_argument("--batches", nargs="+", type=int, default=[16, 128])
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions (default 9, quick 3)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_neurons"))
    args = parser.parse_args()
    for name, values in (("--steps", args.steps), ("--batches", args.batches)):
        if any(value < 1 for value in values):
            parser.error(f"{name} must be positive, got {values}")
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # both forms alike: see docs/engine.md (page faults)
    steps, batches = ([10], [16]) if args.quick else (args.steps, args.batches)
    repeats = args.repeats or (3 if args.quick else 9)
    rows = []
    print(f"{'case':<18} {'T':>4} {'B':>4}  {'train ref/fused samples/s':>26} {'ratio':>6}  "
          f"{'infer ref/fused samples/s':>26} {'ratio':>6}  same")
    for case in args.cases:
        grid = [(None, batch) for batch in batches] if case in STREAMING_CASES else \
            [(t, batch) for t in steps for batch in batches]
        for num_steps, batch in grid:
            row = measure(case, num_steps or 1, batch, repeats)
            rows.append(row)
            print(f"{case:<18} {row['num_steps']:>4} {batch:>4}  {row['train_ref_samples_s']:>12,.0f} / "
                  f"{row['train_fused_samples_s']:>11,.0f} {row['train_speedup']:>6.2f}  "
                  f"{row['infer_ref_samples_s']:>12,.0f} / {row['infer_fused_samples_s']:>11,.0f} "
                  f"{row['infer_speedup']:>6.2f}  {row['same_spikes']}", flush=True)
    machine = {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
               "threads": args.threads, "torch": torch.__version__, "load_average_end": os.getloadavg()}
    path = write_table(rows, args.out / "bench_neurons.csv", "neuron_speed", {"machine": machine, "argv": sys.argv})
    print(f"\nwrote {path} (with its .json sidecar)")
    if not all(row["same_spikes"] for row in rows):
        raise SystemExit("the fused and step-loop forms gave different spikes: see same_spikes")


if __name__ == "__main__":
    main()
