"""Speed of the multi-step engine against snntorch's step loop and SpikingJelly, over a grid.

Cells: Models A and B (and the streaming presets ``streaming``, ``streaming_rleaky`` with
``--models``) at T in {1, 10, 25} and batch 16 and 128 (``--quick``: Models B and A at T = 10,
batch 16 only), on random inputs (``[B, 1, 32, 32]``; streaming: ``[B, 1, 20, T]``, one frame
a step) and the same weights. Per cell, three networks that share one set of parameters:

* ``reference``: the reference code's step-by-step loop (``scnn.models.reference.ReferenceNet``:
  ``snntorch.Leaky`` per layer and step; for the streaming presets ``model.step`` frame by frame);
* ``engine``: the scnn model itself (fused multi-step LIF, spike synapses, compiled inference);
* ``spikingjelly``: SpikingJelly 2.0's multi-step network (:class:`SpikingJellyTwin`: stateless
  layers in ``SeqToANNContainer``, ``LIFNode(tau=1/(1-beta), decay_input=False, v_reset=None)``;
  torch code on the CPU, its CUDA backends chosen by SpikingJelly on a GPU). Absent when
  SpikingJelly is not installed (``pip install --no-deps -r requirements-bench.txt``) or the
  model has a neuron SpikingJelly does not have (ALIF, RLeaky): the reason is printed.

It times, interleaved call by call (so load from other processes hits all alike; a ratio is
the median of the per-repetition ratios):

* training: forward, cross-entropy on the logits, backward, SGD (momentum 0.9) step;
* inference: forward under ``torch.inference_mode``, the engine with its compiled
  binary-spike kernels (the default, :mod:`scnn.engine`) and, reported separately, with
  them switched off (``fast_inference(enabled=False)``: the torch path).

Also, per cell:

* peak training memory of each network: a few training steps in a fresh subprocess with
  ``MALLOC_MMAP_THRESHOLD_=65536`` (large buffers come from mmap and go back to the OS when
  freed, so the resident size follows live memory); the peak resident set (``VmHWM``, what
  ``resource.getrusage``'s ``ru_maxrss`` reports, but resettable through
  ``/proc/self/clear_refs``) is reset after the set-up (model, data) and one untimed training
  step (gradients, optimiser state, lazily loaded code, library workspaces), and the figure
  is its growth over three training steps: activations, tensors saved for backward and
  temporaries (tracemalloc does not see torch's allocations);
* achieved GFLOP/s of the engine's training step and inference forward (useful conv/linear
  FLOPs) against a plain float32 1024^3 matmul measured in the same run (this CPU's dense
  limit): ``train_matmul_ratio``, ``infer_matmul_ratio``;
* the targets (:data:`TARGETS`): training >= 2.5x the step loop and >= 2x SpikingJelly,
  inference >= 5x both, peak training memory <= both; a cell that misses one lists it in
  ``misses`` and gets a profile (torch.profiler's top operators of engine training; cProfile's
  top functions of engine inference, which sees the numba kernels too).

Results: the "engine" table OUT/bench_engine.csv (its sidecar bench_engine.json holds the
machine), the figure OUT/bench_engine_grid.png (:func:`scnn.viz.engine.engine_grid_figure`)
and, where measured, bench_engine_epochs.csv, bench_engine_profile.csv,
bench_engine_trained.csv, bench_engine_trained_profile.csv, (``--crossover``)
bench_engine_crossover.csv, (``--crossover-train``) bench_engine_train_crossover.csv and
(``--crossover-conv``) bench_engine_conv_crossover.csv: see docs/results_formats.md and
:mod:`scnn.result_tables`.

    python benchmarks/bench_engine.py --quick --out runs/bench_engine
    python benchmarks/bench_engine.py --out runs/bench_engine          # full grid
    python benchmarks/bench_engine.py --crossover-train                # sparse training products
    python benchmarks/bench_engine.py --crossover-conv --threads 1     # event-driven convolution training
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
from scnn.models.outputs import NetOutput  # noqa: E402
from scnn.models.reference import ReferenceNet  # noqa: E402
from scnn.neurons.base import reset_net  # noqa: E402
from scnn.result_tables import write_table  # noqa: E402
from scnn.timing import interleaved, median_ratio  # noqa: E402

# Per cell: training and inference speed-ups the engine should reach against each peer, and its
# peak training memory at most theirs (issue 19).
TARGETS = {"train_speedup": 2.5, "train_sj_speedup": 2.0, "infer_speedup": 5.0, "infer_sj_speedup": 5.0}
STREAMING = ("streaming", "streaming_rleaky")
STREAMING_COEFFICIENTS = 20  # the "causal" feature preset: 20 MFCCs per frame


# --------------------------------------------------------------------------- SpikingJelly


def spikingjelly_missing() -> str | None:
    """Why SpikingJelly cannot run here (None when it can)."""
    try:
        import spikingjelly.activation_based.neuron  # noqa: F401
    except ImportError as error:
        return (f"SpikingJelly is not installed ({error}); "
                "pip install --no-deps -r requirements-bench.txt adds it")
    return None


class SpikingJellyTwin(nn.Module):
    """A spiking SpecNet written as SpikingJelly 2.0 writes it, sharing the model's parameters.

    Multi-step throughout: the first synapse runs once on the static input ``[B, C, H, W]`` and
    its current is repeated over T (SpikingJelly's own "static conv" idiom), later synapses run
    in ``layer.SeqToANNContainer`` (T folded into the batch), every neuron is
    ``neuron.LIFNode(tau=1 / (1 - beta), decay_input=False, v_threshold=thr, v_reset=None,
    detach_reset=True, step_mode="m")``. Readout as the model's: the classifier's membrane before
    its reset (``store_v_seq`` plus the spikes times the threshold) or spike count summed over T.

    The neuron: SpikingJelly charges ``H[t] = V[t-1] - V[t-1] / tau + X[t] = beta V[t-1] + X[t]``
    (tau 2 is beta 0.5), fires ``S[t] = H[t] >= thr`` and resets at once, ``V[t] = H[t] - S[t] thr``
    (soft reset; ``v_reset=0`` for the zero reset). That is the Leaky neuron with an immediate reset,
    not the delayed reset of the scnn models and snntorch's default (``U[t] = beta U[t-1] + I[t] -
    S[t-1] thr``: the threshold is subtracted one step later, undecayed), so from a neuron's first
    spike on the two networks' spikes part: the columns compare the same layers, weights and
    neuron cost, not the same spike trains (each row has the engine's spike densities).
    tests/test_bench_engine.py checks the twin against the immediate-reset equations (identical
    spikes and membranes) and against the scnn model at T = 1 (identical spikes). The surrogate
    is SpikingJelly's default sigmoid (it has no fast sigmoid): the backward costs one
    elementwise expression per neuron and step either way.

    Raises ValueError for what SpikingJelly's LIFNode cannot express: other neurons, learnable
    or per-channel beta and threshold, beta of 0 or 1.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        from spikingjelly.activation_based import layer, neuron

        config = model.config
        if not getattr(config, "spiking", False) or not hasattr(model, "blocks") or not hasattr(config, "num_steps"):
            raise ValueError(f"SpikingJelly twin: {type(model).__name__} is not a spiking SpecNet")
        if getattr(config, "neuron", "leaky") != "leaky":
            raise ValueError(f"SpikingJelly twin: neuron {config.neuron!r} has no SpikingJelly LIFNode equivalent")
        if config.learn_beta or config.learn_threshold or config.per_channel_beta:
            raise ValueError("SpikingJelly twin: LIFNode takes one fixed tau and threshold per layer")
        if not 0.0 < config.beta < 1.0:
            raise ValueError(f"SpikingJelly twin: beta must lie in (0, 1) for tau = 1 / (1 - beta), got {config.beta}")
        self.num_steps, self.readout = config.num_steps, config.readout
        blocks = model.blocks
        self.first = nn.Sequential(blocks[0].dropout, blocks[0].synapse, blocks[0].pool)
        layers = []
        for index, block in enumerate(blocks):
            if index > 0:
                layers.append(layer.SeqToANNContainer(block.dropout, block.synapse, block.pool))
            layers.append(neuron.LIFNode(
                tau=1.0 / (1.0 - config.beta), decay_input=False, v_threshold=float(config.threshold),
                v_reset=0.0 if config.reset_mechanism == "zero" else None, detach_reset=True, step_mode="m",
                store_v_seq=index == len(blocks) - 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, record: bool = False) -> NetOutput:
        """x: static input ``[B, C, H, W]`` -> classifier spikes and membrane ``[T, B, classes]``;
        ``record``: every neuron layer's spikes ``[T, B, ...]`` in ``layer_spikes``."""
        from spikingjelly.activation_based import functional, neuron

        functional.reset_net(self)
        current = self.first(x)
        h = current.unsqueeze(0).expand(self.num_steps, *current.shape)
        layer_spikes = []
        for module in self.layers:
            h = module(h)
            if record and isinstance(module, neuron.LIFNode):
                layer_spikes.append(h)
        # the membrane each spike was decided on (before its reset), as the scnn models read out
        membrane = self.layers[-1].v_seq + h * self.layers[-1].v_threshold
        logits = membrane.sum(0) if self.readout == "membrane" else h.sum(0)
        return NetOutput(logits=logits, spikes=h, membrane=membrane, layer_spikes=layer_spikes)


# --------------------------------------------------------------------------- the networks of a cell


class StepLoop(nn.Module):
    """The step-by-step reference of a streaming model: ``model.step`` frame by frame from a reset
    state (snntorch's way of running a network), logits the sum of the per-frame readouts."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> NetOutput:
        reset_net(self.model)
        logits = 0
        for frame in range(x.shape[-1]):
            logits = logits + self.model.step(x[..., frame]).logits
        return NetOutput(logits=logits, spikes=None, membrane=None)


def build(model_name: str, num_steps: int, batch_size: int, seed: int = 0):
    """Engine model, its step-loop reference (same parameters), inputs and labels.

    Models A and B see a static ``[B, 1, 32, 32]`` at each of their T steps; the streaming
    presets see ``[B, 1, 20, T]``, one frame per step.
    """
    torch.manual_seed(seed)
    if model_name in STREAMING:
        model = create_model(model_name, input_shape=(1, STREAMING_COEFFICIENTS, num_steps))
        inputs = torch.randn(batch_size, 1, STREAMING_COEFFICIENTS, num_steps) * 2
        reference = StepLoop(model)
    else:
        model = create_model(model_name, num_steps=num_steps)
        inputs = torch.randn(batch_size, 1, 32, 32) * 2
        reference = ReferenceNet(model)
    labels = torch.randint(0, 10, (batch_size,))
    return model, reference, inputs, labels


def spikingjelly_twin(model: nn.Module) -> tuple[nn.Module | None, str | None]:
    """(SpikingJelly twin, None), or (None, why there is none)."""
    missing = spikingjelly_missing()
    if missing:
        return None, missing
    try:
        return SpikingJellyTwin(model), None
    except ValueError as error:
        return None, str(error)


def training_step(network: nn.Module, optimizer: torch.optim.Optimizer, inputs, labels) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(network(inputs).logits, labels)
    loss.backward()
    optimizer.step()


def inference_step(network: nn.Module, inputs, kernels: bool = True) -> None:
    with torch.inference_mode(), fast_inference(enabled=kernels):
        network(inputs)


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


def _network(name: str, model: nn.Module, reference: nn.Module) -> nn.Module:
    if name == "engine":
        return model
    if name == "reference":
        return reference
    if name == "spikingjelly":
        return SpikingJellyTwin(model)
    raise ValueError(f"unknown network {name!r}: reference, engine or spikingjelly")


def _memory_child(model_name: str, num_steps: int, batch_size: int, engine: str, threads: int) -> None:
    torch.set_num_threads(threads)
    model, reference, inputs, labels = build(model_name, num_steps, batch_size)
    network = _network(engine, model, reference)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    # One untimed step first: it loads code and imports lazily, JIT-compiles oneDNN kernels and
    # sizes library workspaces, one-time costs that differ between the paths and are not
    # training memory. It also allocates the gradients and the momentum.
    training_step(network, optimizer, inputs, labels)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set (VmHWM) to now
    baseline = _status_kib("VmRSS")
    for _ in range(3):
        training_step(network, optimizer, inputs, labels)
    peak = _status_kib("VmHWM")
    print(json.dumps({"peak_growth_mib": (peak - baseline) / 1024}))


def training_memory_mib(model_name: str, num_steps: int, batch_size: int, engine: str, threads: int) -> float:
    """Peak resident-set growth (MiB) of three training steps of one network, in a fresh process."""
    environment = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    from scnn.engine import synapses

    command = [sys.executable, __file__, "--memory-child", model_name, str(num_steps), str(batch_size), engine,
               "--threads", str(threads)] + ([] if synapses.SPARSE_TRAINING["enabled"] else ["--no-sparse-training"])
    output = subprocess.run(command, capture_output=True, text=True, env=environment, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])["peak_growth_mib"]


# --------------------------------------------------------------------------- profiles


def profile_training(model_name: str, num_steps: int = 10, batch_size: int = 16, steps: int = 5,
                     top: int = 10) -> list[dict]:
    """Top operations (self CPU time, torch.profiler) of engine training in one cell."""
    from torch.profiler import ProfilerActivity, profile

    model, _, inputs, labels = build(model_name, num_steps, batch_size)
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


def profile_inference_cell(model_name: str, num_steps: int, batch_size: int, calls: int = 20,
                           top: int = 10) -> list[dict]:
    """Top functions (own time, cProfile: it sees the numba kernels, torch.profiler does not) of
    engine inference in one cell, in the rows of :func:`profile_training`."""
    model, _, inputs, _ = build(model_name, num_steps, batch_size)
    return _function_profile(model, inputs, calls, top)


def _function_profile(model: nn.Module, inputs: torch.Tensor, calls: int, top: int) -> list[dict]:
    import cProfile
    import pstats

    with torch.inference_mode():
        model(inputs)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(calls):
            model(inputs)
        profiler.disable()
    stats = pstats.Stats(profiler).stats  # (file, line, name) -> (primitive calls, calls, own, cumulative, _)
    total = sum(entry[2] for entry in stats.values()) or 1.0
    rows = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:top]
    return [{"op": name if file.startswith("~") else f"{Path(file).name}:{name}",
             "self_ms_per_step": 1e3 * own / calls, "share": own / total, "calls_per_step": count / calls}
            for (file, _, name), (_, count, own, _, _) in rows]


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


def sparse_training_crossover(quick: bool = False, repeats: int = 15) -> list[dict]:
    """Milliseconds of a spike-fed dense layer's training products (forward, weight and bias gradient;
    the input gradient is the same dense product on every path and left out) by spike density:
    dense (``addmm``, ``mm``), sparse (index the spikes, CSR forward, CSR weight gradient) and sparse
    weight gradient only (dense forward): the measurement behind ``SPARSE_TRAINING``'s
    ``max_density`` and ``max_forward_density`` (:mod:`scnn.engine.synapses`). Interleaved."""
    from scnn.engine import synapses

    sizes = ((12544, 128),) if quick else ((12544, 128), (5400, 128))
    row_counts = (160, 1280) if quick else (160, 400, 1280, 3200)  # T * B: T 10 and 25 at batch 16 and 128
    densities = (0.01, 0.05, 0.1) if quick else (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2)
    saved = dict(synapses.SPARSE_TRAINING)
    results = []
    try:
        for inputs, outputs in sizes:
            linear = nn.Linear(inputs, outputs)
            for rows in row_counts:
                grad_output = torch.randn(rows, outputs)
                for density in densities:
                    spikes = (torch.rand(rows, inputs) < density).float()

                    def step(**settings):
                        synapses.SPARSE_TRAINING.update(settings)
                        linear.weight.grad = linear.bias.grad = None
                        synapses.SpikeLinearFunction.apply(spikes, linear.weight, linear.bias).backward(grad_output)

                    times = interleaved({
                        "dense": lambda: step(enabled=False),
                        "sparse": lambda: step(enabled=True, max_density=1.0, max_forward_density=1.0, min_rows=0),
                        "gradient_only": lambda: step(enabled=True, max_density=1.0, max_forward_density=0.0,
                                                      min_rows=0),
                    }, repeats)
                    results.append({"inputs": inputs, "outputs": outputs, "rows": rows, "density": density,
                                    "dense_ms": 1e3 * statistics.median(times["dense"]),
                                    "sparse_ms": 1e3 * statistics.median(times["sparse"]),
                                    "sparse_gradient_only_ms": 1e3 * statistics.median(times["gradient_only"])})
    finally:
        synapses.SPARSE_TRAINING.update(saved)
    return results


def sparse_conv_crossover(quick: bool = False, repeats: int = 15, row_counts: tuple | None = None,
                          densities: tuple | None = None) -> list[dict]:
    """Milliseconds of a spike-fed convolution's training products (forward, weight and bias gradient;
    the input gradient is the same dense transposed convolution on every path and left out) by spike
    density, on Model A's spike-fed 16C3 (6 x 30 x 30 spike maps -> 16 x 28 x 28): dense (oneDNN),
    event-driven (index the spikes, scatter forward, gather weight gradient) and event-driven weight
    gradient only (dense forward): the measurement behind ``SPARSE_CONV_TRAINING``
    (:mod:`scnn.engine.synapses`, :mod:`scnn.engine.sparse_conv`). Interleaved."""
    from scnn.engine import synapses

    if row_counts is None:  # T * B: T 10 at batch 16 and 128, T 25 at 128
        row_counts = (160, 1280) if quick else (160, 1280, 3200)
    if densities is None:
        densities = (0.01, 0.05, 0.1) if quick else (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15)
    conv = nn.Conv2d(6, 16, 3)
    saved = dict(synapses.SPARSE_CONV_TRAINING)
    results = []
    try:
        for rows in row_counts:
            grad_output = torch.randn(rows, 16, 28, 28)
            for density in densities:
                spikes = (torch.rand(rows, 6, 30, 30) < density).float()

                def step(**settings):
                    synapses.SPARSE_CONV_TRAINING.update(settings)
                    conv.weight.grad = conv.bias.grad = None
                    synapses.SpikeConv2dFunction.apply(spikes, conv.weight, conv.bias, conv.stride, conv.padding,
                                                       conv.dilation, conv.groups).backward(grad_output)

                times = interleaved({
                    "dense": lambda: step(enabled=False),
                    "sparse": lambda: step(enabled=True, max_density=1.0, max_forward_density=1.0, min_rows=0),
                    "gradient_only": lambda: step(enabled=True, max_density=1.0, max_forward_density=0.0, min_rows=0),
                }, repeats)
                results.append({"in_channels": 6, "out_channels": 16, "kernel": 3, "height": 30, "width": 30,
                                "rows": rows, "density": density,
                                "dense_ms": 1e3 * statistics.median(times["dense"]),
                                "sparse_ms": 1e3 * statistics.median(times["sparse"]),
                                "sparse_gradient_only_ms": 1e3 * statistics.median(times["gradient_only"]),
                                "speedup": median_ratio(times["dense"], times["sparse"]),
                                "gradient_only_speedup": median_ratio(times["dense"], times["gradient_only"])})
    finally:
        synapses.SPARSE_CONV_TRAINING.clear()
        synapses.SPARSE_CONV_TRAINING.update(saved)
    return results


# --------------------------------------------------------------------------- trained models


def profile_inference(model: nn.Module, inputs: torch.Tensor, calls: int = 50, top: int = 8) -> list[dict]:
    """Where one inference forward spends its time, by Python-level function (cProfile sees
    the compiled kernels and torch's operators alike; torch.profiler does not see numba)."""
    return [{"function": entry["op"], "own_ms_per_forward": entry["self_ms_per_step"]}
            for entry in _function_profile(model, inputs, calls, top)]


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


def measure(model_name: str, num_steps: int, batch_size: int, repeats: int, threads: int, memory: bool,
            peak_gflops: float, use_spikingjelly: bool = True) -> dict:
    """One cell of the grid: the three networks timed interleaved, memory, FLOP rates, the targets missed."""
    model, reference, inputs, labels = build(model_name, num_steps, batch_size)
    twin, why_not = spikingjelly_twin(model) if use_spikingjelly else (None, "--no-spikingjelly")
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)  # shared: one set of parameters
    train_steps = {"reference": lambda: training_step(reference, optimizer, inputs, labels),
                   "engine": lambda: training_step(model, optimizer, inputs, labels)}
    infer_steps = {"reference": lambda: inference_step(reference, inputs),
                   "engine": lambda: inference_step(model, inputs),
                   "engine_torch": lambda: inference_step(model, inputs, kernels=False)}
    if twin is not None:
        train_steps["spikingjelly"] = lambda: training_step(twin, optimizer, inputs, labels)
        infer_steps["spikingjelly"] = lambda: inference_step(twin, inputs)
    train = interleaved(train_steps, repeats)
    infer = interleaved(infer_steps, repeats)
    with torch.no_grad():
        densities = [float(s.mean()) for s in model(inputs, record=True).layer_spikes]
    forward_flops, flops = training_flops(model, inputs)
    engine_train_s, engine_infer_s = statistics.median(train["engine"]), statistics.median(infer["engine"])
    row = {
        "model": model_name, "num_steps": num_steps, "batch_size": batch_size,
        "train_ref_samples_s": batch_size / statistics.median(train["reference"]),
        "train_engine_samples_s": batch_size / engine_train_s,
        "train_speedup": median_ratio(train["reference"], train["engine"]),
        "infer_ref_samples_s": batch_size / statistics.median(infer["reference"]),
        "infer_engine_samples_s": batch_size / engine_infer_s,
        "infer_speedup": median_ratio(infer["reference"], infer["engine"]),
        "infer_torch_speedup": median_ratio(infer["reference"], infer["engine_torch"]),
        "train_engine_gflops": flops / engine_train_s / 1e9,
        "spike_density": [round(d, 4) for d in densities],
        "train_mem_ref_mib": None, "train_mem_engine_mib": None,  # not measured: blank in the table
        "train_sj_samples_s": None, "train_sj_speedup": None, "infer_sj_samples_s": None, "infer_sj_speedup": None,
        "train_mem_sj_mib": None, "spikingjelly_absent": why_not,
        "infer_engine_gflops": forward_flops / engine_infer_s / 1e9,
    }
    row["train_matmul_ratio"] = row["train_engine_gflops"] / peak_gflops
    row["infer_matmul_ratio"] = row["infer_engine_gflops"] / peak_gflops
    if twin is not None:
        row.update(train_sj_samples_s=batch_size / statistics.median(train["spikingjelly"]),
                   train_sj_speedup=median_ratio(train["spikingjelly"], train["engine"]),
                   infer_sj_samples_s=batch_size / statistics.median(infer["spikingjelly"]),
                   infer_sj_speedup=median_ratio(infer["spikingjelly"], infer["engine"]))
    if memory:
        for name, column in (("reference", "train_mem_ref_mib"), ("engine", "train_mem_engine_mib"),
                             ("spikingjelly", "train_mem_sj_mib")):
            if name != "spikingjelly" or twin is not None:
                row[column] = training_memory_mib(model_name, num_steps, batch_size, name, threads)
    row["misses"] = ";".join(missed_targets(row)) or "none"
    return row


def missed_targets(row: dict) -> list[str]:
    """The targets (:data:`TARGETS`, memory at most the peers') a measured row misses; unmeasured ones are not
    counted (e.g. no SpikingJelly, no memory)."""
    misses = [f"{column}<{target:g}" for column, target in TARGETS.items()
              if row.get(column) is not None and row[column] < target]
    engine_memory = row.get("train_mem_engine_mib")
    for column in ("train_mem_ref_mib", "train_mem_sj_mib"):
        if engine_memory is not None and row.get(column) is not None and engine_memory > row[column]:
            misses.append(f"train_mem_engine_mib>{column}")
    return misses


def _format_row(row: dict, peak: float) -> str:
    def number(value, width, digits=1):
        return f"{value:{width}.{digits}f}" if value is not None else f"{'-':>{width}}"

    return (f"{row['model']:16} {row['num_steps']:3d} {row['batch_size']:4d} | {row['train_ref_samples_s']:8.1f} "
            f"{number(row['train_sj_samples_s'], 8)} {row['train_engine_samples_s']:8.1f} {row['train_speedup']:5.2f} "
            f"{number(row['train_sj_speedup'], 5, 2)} | {row['infer_ref_samples_s']:8.1f} "
            f"{number(row['infer_sj_samples_s'], 8)} {row['infer_engine_samples_s']:8.1f} {row['infer_speedup']:5.2f} "
            f"{number(row['infer_sj_speedup'], 5, 2)} {row['infer_torch_speedup']:5.2f} | "
            f"{100 * row['train_matmul_ratio']:4.0f} {100 * row['infer_matmul_ratio']:4.0f} | "
            f"{number(row['train_mem_ref_mib'], 6)} {number(row['train_mem_sj_mib'], 6)} "
            f"{number(row['train_mem_engine_mib'], 6)} | {row['misses']}   density {row['spike_density']}")


HEADER = (f"{'model':16} {'T':>3} {'B':>4} | {'train: loop':>8} {'SJ':>8} {'engine':>8} {'xloop':>5} {'xSJ':>5} | "
          f"{'infer: loop':>8} {'SJ':>8} {'engine':>8} {'xloop':>5} {'xSJ':>5} {'torch':>5} | {'%mm':>4} {'inf':>4} | "
          f"{'mem loop':>6} {'SJ':>6} {'engine':>6} MiB | misses")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only T=10, batch 16; fewer repeats")
    parser.add_argument("--models", nargs="+", default=["model_b", "model_a"],
                        help="model presets (also: streaming, streaming_rleaky)")
    parser.add_argument("--steps", nargs="+", type=int, default=[1, 10, 25])
    parser.add_argument("--batches", nargs="+", type=int, default=[16, 128])
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions (default 9, quick 7)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-memory", action="store_true", help="skip the subprocess memory measurement")
    parser.add_argument("--no-spikingjelly", action="store_true", help="leave SpikingJelly's column out")
    parser.add_argument("--no-sparse-training", action="store_true",
                        help="train spike-fed dense and convolution layers densely at any density "
                             "(scnn.engine.policy.sparse_training, sparse_conv_training; compare two runs to see "
                             "what the sparse products give; memory children inherit it)")
    parser.add_argument("--no-profile", action="store_true",
                        help="no profiles (default: engine training at T = 10, batch 16, and every cell that "
                             "misses a target)")
    parser.add_argument("--no-epoch", action="store_true", help="skip the FSDD-sized epoch of each model")
    parser.add_argument("--no-figure", action="store_true", help="do not draw OUT/bench_engine_grid.png")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_engine"))
    parser.add_argument("--crossover", action="store_true",
                        help="only time the fused CSR product against the dense one by spike density")
    parser.add_argument("--crossover-train", action="store_true",
                        help="only time the sparse training products (forward + weight gradient from the active "
                             "spikes) against the dense ones by spike density")
    parser.add_argument("--crossover-conv", action="store_true",
                        help="only time the event-driven training products of Model A's spike-fed 16C3 convolution "
                             "(forward + weight gradient from the active spikes) against the dense ones by spike "
                             "density (--quick: fewer rows and densities; --repeats, default 15)")
    parser.add_argument("--checkpoints", nargs="*", type=Path, default=[],
                        help="trained checkpoints (best.pt) whose FSDD test set is run at batch 16 too")
    parser.add_argument("--data-dir", default=None, help="FSDD recordings for --checkpoints (default: as trained)")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's malloc thresholds alone (train() raises them, see "
                             "scnn.engine.keep_freed_memory; both sides of every ratio share the setting)")
    parser.add_argument("--memory-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.no_sparse_training:
        from scnn.engine import synapses

        synapses.SPARSE_TRAINING["enabled"] = False
        synapses.SPARSE_CONV_TRAINING["enabled"] = False
    if args.memory_child:
        name, steps, batch, engine = args.memory_child
        _memory_child(name, int(steps), int(batch), engine, args.threads)
        return
    kept_freed_memory = False if args.default_malloc else keep_freed_memory()
    print(f"malloc keeps freed memory (scnn.engine.keep_freed_memory): {kept_freed_memory}")
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": args.threads,
               "torch": torch.__version__}
    if args.crossover:
        print(f"{'layer':>12} {'density':>7} {'LIF + dense':>11} {'LIF + CSR':>9} ms")
        rows = csr_crossover()
        for row in rows:
            print(f"{row['inputs']:>6}x{row['outputs']:<5} {row['density']:7.2f} {row['dense_ms']:11.3f} "
                  f"{row['csr_ms']:9.3f}", flush=True)
        path = write_table(rows, args.out / "bench_engine_crossover.csv", "engine_crossover",
                           {"machine": machine, "argv": sys.argv})
        print(f"\nwrote {path}")
        return
    if args.crossover_train:
        print(f"{'layer':>12} {'rows':>5} {'density':>7} {'dense':>8} {'sparse':>8} {'sparse W':>8} "
              f"ms (forward + weight gradient; sparse W: dense forward, sparse weight gradient)")
        rows = sparse_training_crossover(quick=args.quick)
        for row in rows:
            print(f"{row['inputs']:>6}x{row['outputs']:<5} {row['rows']:5d} {row['density']:7.3f} "
                  f"{row['dense_ms']:8.3f} {row['sparse_ms']:8.3f} {row['sparse_gradient_only_ms']:8.3f}", flush=True)
        path = write_table(rows, args.out / "bench_engine_train_crossover.csv", "engine_train_crossover",
                           {"machine": machine, "argv": sys.argv})
        print(f"\nwrote {path}")
        return
    if args.crossover_conv:
        print(f"{'rows':>5} {'density':>7} {'dense':>8} {'sparse':>8} {'sparse W':>8} {'xdense':>6} {'xW':>6} "
              f"ms (16C3 on 6x30x30: forward + weight gradient; sparse W: dense forward, event-driven weight gradient)")
        rows = sparse_conv_crossover(quick=args.quick, repeats=args.repeats or 15)
        for row in rows:
            print(f"{row['rows']:5d} {row['density']:7.3f} {row['dense_ms']:8.2f} {row['sparse_ms']:8.2f} "
                  f"{row['sparse_gradient_only_ms']:8.2f} {row['speedup']:6.2f} {row['gradient_only_speedup']:6.2f}",
                  flush=True)
        path = write_table(rows, args.out / "bench_engine_conv_crossover.csv", "engine_conv_crossover",
                           {"machine": machine, "argv": sys.argv, "load_average_end": os.getloadavg()})
        print(f"\nwrote {path}")
        return
    if args.quick:
        args.steps, args.batches = [10], [16]
    repeats = args.repeats or (7 if args.quick else 9)
    missing = None if args.no_spikingjelly else spikingjelly_missing()
    if missing:
        print(f"SpikingJelly column left out: {missing}")
    else:
        import spikingjelly
        machine["spikingjelly"] = getattr(spikingjelly, "__version__", None) or _distribution_version("spikingjelly")

    machine["load_average_start"] = os.getloadavg()
    peak = matmul_gflops()
    machine["matmul_gflops"] = peak
    machine["keep_freed_memory"] = kept_freed_memory
    from scnn.engine import synapses

    machine["sparse_training"] = dict(synapses.SPARSE_TRAINING)
    print(f"torch {torch.__version__}, {args.threads} threads, load average {machine['load_average_start']}, "
          f"float32 1024^3 matmul {peak:.1f} GFLOP/s (the dense limit: %mm = engine GFLOP/s / this)")
    print(HEADER)
    rows = []
    for name in args.models:
        for steps in args.steps:
            for batch in args.batches:
                row = measure(name, steps, batch, repeats, args.threads, not args.no_memory, peak,
                              use_spikingjelly=not args.no_spikingjelly)
                if row["spikingjelly_absent"] and not missing and not args.no_spikingjelly:
                    print(f"  ({name}: no SpikingJelly column: {row['spikingjelly_absent']})")
                rows.append(row)
                print(_format_row(row, peak), flush=True)
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
            if name in STREAMING:
                continue
            epochs[name] = epoch_seconds(name)
            print(f"  {name}: reference {epochs[name]['reference']:.2f} s, engine {epochs[name]['engine']:.2f} s "
                  f"({epochs[name]['reference'] / epochs[name]['engine']:.2f}x)", flush=True)
    profiles = []
    if not args.no_profile:
        profiles = cell_profiles(args.models, rows)
    machine["load_average_end"] = os.getloadavg()
    metadata = {"machine": machine, "argv": sys.argv, "targets": TARGETS}
    write_tables(args.out, metadata, rows, trained, epochs, profiles)
    if rows and not args.no_figure:
        from scnn.viz.engine import engine_grid_figure

        print(f"wrote {engine_grid_figure(args.out / 'bench_engine.csv', args.out / 'bench_engine_grid.png')}")


def _distribution_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cell_profiles(models: list[str], rows: list[dict], fixed: tuple[int, int] | None = (10, 16)) -> list[dict]:
    """Engine training at ``fixed`` (T, batch; default T = 10, batch 16) for every model, the fixed
    point of comparison, and every cell that misses a target: its training (a training target or
    memory missed) and/or its inference."""
    wanted = {(name, *fixed, "train") for name in models} if fixed else set()
    for row in rows:
        misses = row["misses"].split(";") if row["misses"] != "none" else []
        cell = (row["model"], row["num_steps"], row["batch_size"])
        if any(miss.startswith("train") for miss in misses):
            wanted.add((*cell, "train"))
        if any(miss.startswith("infer") for miss in misses):
            wanted.add((*cell, "infer"))
    by_cell = {(row["model"], row["num_steps"], row["batch_size"]): row for row in rows}
    profiles = []
    for name, steps, batch, phase in sorted(wanted, key=lambda cell: (models.index(cell[0]), *cell[1:])):
        entries = (profile_training(name, steps, batch) if phase == "train"
                   else profile_inference_cell(name, steps, batch))
        row = by_cell.get((name, steps, batch))
        ratio = row and row["train_matmul_ratio" if phase == "train" else "infer_matmul_ratio"]
        print(f"\nprofile, engine {phase} {name} T={steps} b{batch}"
              + (f" ({100 * ratio:.0f} % of the matmul's GFLOP/s; misses {row['misses']})" if row else "")
              + (" (self CPU ms per step):" if phase == "train" else " (own ms per forward, by function):"))
        for entry in entries:
            print(f"  {entry['op'][:60]:60} {entry['self_ms_per_step']:7.2f} ms {100 * entry['share']:5.1f} %"
                  f"  {entry['calls_per_step']:6.0f} calls")
            profiles.append({"model": name, "num_steps": steps, "batch_size": batch, "phase": phase, **entry})
    return profiles


def write_tables(out: Path, metadata: dict, rows: list[dict], trained: list[dict], epochs: dict,
                 profiles: list[dict]) -> None:
    """Every measurement as a results table (scnn.result_tables; docs/results_formats.md), each CSV with
    its sidecar holding ``metadata`` (the machine, the command line). Tables with no rows are not written."""
    tables = {
        "bench_engine": ("engine", rows),
        "bench_engine_epochs": ("engine_epoch", [{"model": name, "reference_s": seconds["reference"],
                                                  "engine_s": seconds["engine"]} for name, seconds in epochs.items()]),
        "bench_engine_profile": ("engine_profile", profiles),
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
