"""CPU kernels that exploit binary spikes (numba; chosen by :mod:`scnn.engine`).

Three paths on float32 CPU tensors, for inference (no autograd graph); the grouped product
also trains, through :class:`scnn.engine.synapses.StaticLifLinearFunction` (``spike_patterns``,
``grouped_product``, ``grouped_weight_gradient``):

``lif_spikes``
    The LIF of :class:`scnn.neurons.FusedLeakySequence` over ``T`` steps in one compiled
    pass per sample, with the same float32 operations in the same order (``beta * U``,
    ``+ I``, ``- S * thr``; zero reset ``x - x * S``), so the spikes are identical; the
    torch loop issues ~4 tensor operations per step instead.

``alif_spikes``
    The same for the adaptive LIF of :class:`scnn.engine.recurrent.FusedALIFSequence`: its
    seven tensor operations a step become one pass, spikes identical.

``static_lif_linear``
    The first LIF under direct encoding sees the same current ``c[b, j]`` at every step,
    so neuron j's spike train over the T steps is a function of ``c[b, j]`` alone, written
    as a T-bit code. Neurons sharing a code (a *pattern* p) reach the next dense layer
    together::

        I[t, b] = bias + sum_p bit_t(p) * G[b, p],     G[b, p] = sum_{j : code[b, j] = p} W[:, j]

    One weight row per active neuron and sample is added, instead of one per neuron and
    step (dense) or per spike (sparse); with T = 10 there are a few dozen patterns.

``lif_csr_linear``
    A LIF whose input changes over time, followed by a dense layer: each step's spiking
    neurons are written as column indices (CSR) straight from the LIF's loop, no dense
    spike tensor, and multiplied with ``W.T`` by MKL's sparse product. It pays up to about
    7.5 % density (docs/engine.md); above that the spikes go back to the dense product.

All change only the float32 summation order of the dense product, not the spikes of the
layer they compute. Thread count follows ``torch.get_num_threads()``.
"""

from __future__ import annotations

import warnings
import weakref

import numpy as np
import torch

try:
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - numba comes with librosa
    numba = None

MAX_PATTERN_STEPS = 64  # spike trains are stored as uint64 bit codes


def available() -> bool:
    return numba is not None


_POOL = {"started": False}


def _use_torch_threads() -> None:
    """Run the next parallel kernel on torch's thread count.

    numba's OpenMP threading layer shares the OpenMP runtime with torch, and starting its thread
    pool (the first parallel call in a process) sets OpenMP's thread count to every core: torch
    then silently ran on all cores after ``--threads 1``, and two same-seed trainings in one process
    differed (the first switched thread count mid-run). So the pool is started here once, on a
    trivial kernel, and torch's count put back.
    """
    threads = torch.get_num_threads()
    if not _POOL["started"]:
        _start_pool(np.zeros(2))
        _POOL["started"] = True
        torch.set_num_threads(threads)
    wanted = max(1, min(threads, numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != wanted:  # setting it is not free: a call into every worker's OpenMP state
        numba.set_num_threads(wanted)


if numba is not None:
    @njit(parallel=True, cache=False)
    def _start_pool(values):  # pragma: no cover - compiled
        for index in prange(values.shape[0]):
            values[index] += 0.0


def _per_neuron(value: torch.Tensor, neuron_shape: torch.Size) -> np.ndarray:
    """A scalar or per-channel parameter as a contiguous float32 array of one value per neuron."""
    return value.detach().float().expand(neuron_shape).reshape(-1).contiguous().numpy()


# --------------------------------------------------------------------------- compiled parts

if numba is not None:

    @njit(cache=True)
    def _lif_row(membrane, current, previous_spikes, beta, threshold, reset_to_zero, spikes):
        """One step of one sample: all arrays ``[N]`` float32, updated in place."""
        if reset_to_zero:
            for j in range(membrane.shape[0]):
                decayed = beta[j] * membrane[j]
                decayed = decayed - decayed * previous_spikes[j]
                value = decayed + current[j]
                membrane[j] = value
                spikes[j] = np.float32(1.0) if value > threshold[j] else np.float32(0.0)
        else:
            for j in range(membrane.shape[0]):
                value = beta[j] * membrane[j] + current[j] - previous_spikes[j] * threshold[j]
                membrane[j] = value
                spikes[j] = np.float32(1.0) if value > threshold[j] else np.float32(0.0)

    @njit(parallel=True, cache=True)
    def _lif_sequence(current, beta, threshold, reset_to_zero, spikes, membranes):
        """current ``[T or 1, B, N]`` (1: the same at every step); out: spikes ``[T, B, N]`` and,
        unless it is empty, membranes ``[T, B, N]``."""
        steps, batch, neurons = spikes.shape
        static = current.shape[0] == 1
        keep_membranes = membranes.size > 0
        for b in prange(batch):
            membrane = np.zeros(neurons, np.float32)
            silent = np.zeros(neurons, np.float32)
            for t in range(steps):
                row = current[0, b] if static else current[t, b]
                previous = spikes[t - 1, b] if t > 0 else silent
                _lif_row(membrane, row, previous, beta, threshold, reset_to_zero, spikes[t, b])
                if keep_membranes:
                    membranes[t, b, :] = membrane

    @njit(parallel=True, cache=True)
    def _alif_sequence(current, beta, threshold, rho, one_minus_rho, gain, reset_to_zero, spikes, membranes):
        """The adaptive LIF of :class:`scnn.engine.recurrent.FusedALIFSequence`: current ``[T, B, N]``;
        parameters ``[N]`` float32, clamped by the caller; out: spikes ``[T, B, N]`` and, unless it is
        empty, membranes ``[T, B, N]``. The same float32 operations in the same order as its forward."""
        steps, batch, neurons = spikes.shape
        keep_membranes = membranes.size > 0
        for b in prange(batch):
            membrane = np.zeros(neurons, np.float32)
            level = np.zeros(neurons, np.float32)
            previous = np.zeros(neurons, np.float32)
            for t in range(steps):
                for j in range(neurons):
                    if t == 0:
                        adapted = np.float32(0.0)
                        limit = adapted * gain[j] + threshold[j]
                        value = current[0, b, j]
                    else:
                        adapted = level[j] * rho[j] + previous[j] * one_minus_rho[j]  # A = r A + (1 - r) S
                        limit = adapted * gain[j] + threshold[j]  # B = thr + k A
                        value = membrane[j] * beta[j]
                        if reset_to_zero:
                            value = value - value * previous[j]
                            value = value + current[t, b, j]
                        else:
                            value = value + current[t, b, j]
                            value = value - previous[j] * limit
                    level[j] = adapted
                    membrane[j] = value
                    previous[j] = np.float32(1.0) if value > limit else np.float32(0.0)
                spikes[t, b, :] = previous
                if keep_membranes:
                    membranes[t, b, :] = membrane

    @njit(parallel=True, cache=True)
    def _static_codes(current, beta, threshold, reset_to_zero, steps, codes, membranes):
        """current ``[B, N]`` constant over steps; codes ``[B, N]`` uint64 out, bit t = spike at
        step t; membranes ``[T, B, N]`` out too unless it is empty."""
        batch, neurons = current.shape
        keep_membranes = membranes.size > 0
        for b in prange(batch):
            membrane = np.zeros(neurons, np.float32)
            previous = np.zeros(neurons, np.float32)
            spikes = np.zeros(neurons, np.float32)
            code = codes[b]
            code[:] = 0
            for t in range(steps):
                _lif_row(membrane, current[b], previous, beta, threshold, reset_to_zero, spikes)
                if keep_membranes:
                    membranes[t, b, :] = membrane
                for j in range(neurons):
                    code[j] |= np.uint64(spikes[j] != 0) << np.uint64(t)
                previous, spikes = spikes, previous

    @njit(parallel=True, cache=True)
    def _group_by_code(codes, group_of, group_codes, group_counts):
        """Number each sample's distinct non-zero codes 0, 1, ... in order of appearance.

        codes ``[B, N]``; out: group_of ``[B, N]`` (-1 for silent neurons), group_codes
        ``[B, N]`` (first group_counts[b] entries used), group_counts ``[B]``.
        """
        batch, neurons = codes.shape
        size = 1
        while size < 2 * neurons:
            size *= 2
        for b in prange(batch):
            keys = np.zeros(size, np.uint64)  # open addressing; 0 marks an empty slot
            values = np.empty(size, np.int32)
            count = 0
            for j in range(neurons):
                key = codes[b, j]
                if key == 0:
                    group_of[b, j] = -1
                    continue
                slot = np.int64((key * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)) & (size - 1)
                while keys[slot] != 0 and keys[slot] != key:
                    slot = (slot + 1) & (size - 1)
                if keys[slot] == 0:
                    keys[slot] = key
                    values[slot] = count
                    group_codes[b, count] = key
                    count += 1
                group_of[b, j] = values[slot]
            group_counts[b] = count

    @njit(parallel=True, cache=True)
    def _group_sums(group_of, weight_t, sums):
        """sums ``[B, P, M]`` (zeroed) += weight_t[j] for each neuron j of each group."""
        batch, neurons = group_of.shape
        outputs = weight_t.shape[1]
        for b in prange(batch):
            for j in range(neurons):
                group = group_of[b, j]
                if group < 0:
                    continue
                total = sums[b, group]
                row = weight_t[j]
                for m in range(outputs):
                    total[m] += row[m]

    @njit(parallel=True, cache=True)
    def _scatter_group_rows(group_of, per_group, grad_weight_t):
        """grad_weight_t ``[N, M]`` (zeroed) += per_group[b, group_of[b, j]] over samples b, for
        each neuron j: the weight gradient of the grouped product (one thread per neuron block)."""
        batch, neurons = group_of.shape
        outputs = grad_weight_t.shape[1]
        for j in prange(neurons):
            total = grad_weight_t[j]
            for b in range(batch):
                group = group_of[b, j]
                if group >= 0:
                    row = per_group[b, group]
                    for m in range(outputs):
                        total[m] += row[m]

    @njit(cache=True)
    def _spiking_columns(pairs, columns_out):
        """Write the indices of the nonzero float32 entries to ``columns_out``; returns how many.

        pairs: the spikes' memory as uint64, two float32 at a time (low half = even index on
        little-endian CPUs), so a silent pair costs one test.
        """
        count = 0
        low_half = np.uint64(0xFFFFFFFF)
        for k in range(pairs.shape[0]):
            word = pairs[k]
            if word != 0:
                if word & low_half:
                    columns_out[count] = 2 * k
                    count += 1
                if word >> np.uint64(32):
                    columns_out[count] = 2 * k + 1
                    count += 1
        return count

    @njit(parallel=True, cache=True)
    def _lif_sequence_columns(current, beta, threshold, reset_to_zero, steps, columns, counts):
        """The LIF of ``_lif_sequence`` keeping, for each row r = t * B + b, only the indices of
        its spiking neurons: ``columns[r, :counts[r]]``. current ``[T or 1, B, N]``."""
        batch, neurons = current.shape[1], current.shape[2]
        static = current.shape[0] == 1
        paired = neurons + neurons % 2  # spike buffers read in pairs: an odd N gets a silent extra slot
        for b in prange(batch):
            membrane = np.zeros(neurons, np.float32)
            previous = np.zeros(paired, np.float32)
            spikes = np.zeros(paired, np.float32)
            for t in range(steps):
                row = current[0, b] if static else current[t, b]
                _lif_row(membrane, row, previous, beta, threshold, reset_to_zero, spikes)
                counts[t * batch + b] = _spiking_columns(spikes.view(np.uint64), columns[t * batch + b])
                previous, spikes = spikes, previous

    @njit(parallel=True, cache=True)
    def _pack_rows(columns, counts, row_starts, packed):
        """Concatenate the rows ``columns[r, :counts[r]]`` into ``packed`` at ``row_starts[r]``."""
        for r in prange(columns.shape[0]):
            packed[row_starts[r]:row_starts[r] + counts[r]] = columns[r, :counts[r]]

    @njit(parallel=True, cache=True)
    def _unpack_rows(columns, counts, spikes):
        """spikes ``[R, N]`` (zeroed) = 1 at ``columns[r, :counts[r]]``."""
        for r in prange(columns.shape[0]):
            for k in range(counts[r]):
                spikes[r, columns[r, k]] = 1.0

# --------------------------------------------------------------------------- torch-facing wrappers


def _sequence_rows(current: torch.Tensor) -> torch.Tensor:
    """A LIF's input ``[T, B, ...]`` as contiguous float32 ``[T, B, N]``, or ``[1, B, N]`` when it
    is an expanded static view (stride 0 over T): the kernels then read the one step T times."""
    if current.shape[0] > 1 and current.stride(0) == 0:
        current = current[:1]
    return current.reshape(current.shape[0], current.shape[1], -1).float().contiguous()


def lif_spikes(current: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor, reset_to_zero: bool,
               return_membranes: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Spikes (and membranes if asked) ``[T, B, ...]`` of a LIF layer driven by ``current`` ``[T, B, ...]``.

    current may be an expanded static view (stride 0 over T); beta (clamped to [0, 1] by
    the caller) and threshold are scalars or broadcast against one sample's ``[...]``.
    """
    _use_torch_threads()
    steps, batch, neuron_shape = current.shape[0], current.shape[1], current.shape[2:]
    flat = _sequence_rows(current)
    spikes = torch.empty(steps, batch, flat.shape[2])
    membranes = torch.empty(spikes.shape if return_membranes else (0, 0, 0))
    _lif_sequence(flat.numpy(), _per_neuron(beta, neuron_shape), _per_neuron(threshold, neuron_shape),
                  reset_to_zero, spikes.numpy(), membranes.numpy())
    unflatten = (steps, batch, *neuron_shape)
    return spikes.reshape(unflatten), membranes.reshape(unflatten) if return_membranes else None


def alif_spikes(current: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor, rho: torch.Tensor,
                adaptation: torch.Tensor, reset_to_zero: bool,
                return_membranes: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Spikes (and membranes if asked) ``[T, B, ...]`` of an adaptive LIF layer (:mod:`scnn.neurons.alif`)
    driven by ``current [T, B, ...]``, in one compiled pass per sample; parameters as the neuron holds them
    (scalars or broadcast against one sample's ``[...]``; clamped here as its forward clamps them)."""
    _use_torch_threads()
    steps, batch, neuron_shape = current.shape[0], current.shape[1], current.shape[2:]
    flat = current.reshape(steps, batch, -1).float().contiguous()
    rho = rho.detach().clamp(0, 1)
    spikes = torch.empty(flat.shape)
    membranes = torch.empty(spikes.shape if return_membranes else (0, 0, 0))
    _alif_sequence(flat.numpy(), _per_neuron(beta.detach().clamp(0, 1), neuron_shape),
                   _per_neuron(threshold, neuron_shape), _per_neuron(rho, neuron_shape),
                   _per_neuron(1 - rho, neuron_shape), _per_neuron(adaptation.detach().clamp(min=0), neuron_shape),
                   reset_to_zero, spikes.numpy(), membranes.numpy())
    unflatten = (steps, batch, *neuron_shape)
    return spikes.reshape(unflatten), membranes.reshape(unflatten) if return_membranes else None


_TRANSPOSED: dict[int, tuple] = {}  # id(weight) -> (weakref, version, data pointer, weight.T contiguous)


def _transposed(weight: torch.Tensor) -> torch.Tensor:
    """``weight.T`` ``[N, M]`` contiguous, cached until the weight changes (version counter, storage) or dies."""
    key = id(weight)
    cached = _TRANSPOSED.get(key)
    if cached is None or cached[0]() is not weight or cached[1:3] != (weight._version, weight.data_ptr()):
        reference = weakref.ref(weight, lambda _, key=key: _TRANSPOSED.pop(key, None))
        cached = (reference, weight._version, weight.data_ptr(), weight.detach().t().contiguous())
        _TRANSPOSED[key] = cached
    return cached[3]


def static_lif_linear(current: torch.Tensor, steps: int, beta: torch.Tensor, threshold: torch.Tensor,
                      reset_to_zero: bool, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Current ``[T, B, M]`` of a dense layer fed by a LIF whose input is static.

    current: the LIF's input ``[B, ...]``, the same at each of ``steps`` (<= 64) steps;
    weight ``[M, N]`` and bias ``[M]`` of the dense layer, N = neurons per sample.
    """
    group_of, bits, _ = spike_patterns(current, steps, beta, threshold, reset_to_zero)
    return grouped_product(group_of, bits, weight, bias)


def spike_patterns(current: torch.Tensor, steps: int, beta: torch.Tensor, threshold: torch.Tensor,
                   reset_to_zero: bool, keep_membranes: bool = False):
    """The first LIF's spikes under static input, as patterns: ``(group_of, bits, membranes)``.

    group_of ``[B, N]`` int32 numpy: each neuron's pattern, -1 if silent; bits ``[B, T, P]``
    float32: pattern p's spike at step t; membranes ``[T, B, ...]`` if ``keep_membranes``.
    """
    if not 1 <= steps <= MAX_PATTERN_STEPS:
        raise ValueError(f"spike patterns need 1..{MAX_PATTERN_STEPS} steps, got {steps}")
    _use_torch_threads()
    batch, neuron_shape = current.shape[0], current.shape[1:]
    flat = current.detach().reshape(batch, -1).float().contiguous().numpy()
    neurons = flat.shape[1]
    codes = np.empty((batch, neurons), np.uint64)
    membranes = torch.empty((steps, batch, neurons) if keep_membranes else (0, 0, 0))
    _static_codes(flat, _per_neuron(beta, neuron_shape), _per_neuron(threshold, neuron_shape),
                  reset_to_zero, steps, codes, membranes.numpy())
    group_of = np.empty((batch, neurons), np.int32)
    group_codes = np.zeros((batch, neurons), np.uint64)
    group_counts = np.zeros(batch, np.int64)
    _group_by_code(codes, group_of, group_codes, group_counts)
    patterns = max(int(group_counts.max()), 1)
    # bits[b, t, p] = spike of pattern p at step t (unused pattern slots have code 0)
    pattern_codes = torch.from_numpy(group_codes[:, :patterns].view(np.int64))
    step_bits = torch.arange(steps, dtype=torch.int64)
    bits = ((pattern_codes.unsqueeze(1) >> step_bits.view(1, steps, 1)) & 1).float()
    return group_of, bits, membranes.reshape(steps, batch, *neuron_shape) if keep_membranes else None


def grouped_product(group_of: np.ndarray, bits: torch.Tensor, weight: torch.Tensor,
                    bias: torch.Tensor | None) -> torch.Tensor:
    """``spikes @ weight.T + bias`` ``[T, B, M]`` for spikes given as patterns (:func:`spike_patterns`)."""
    batch, patterns = bits.shape[0], bits.shape[2]
    sums = torch.zeros(batch, patterns, weight.shape[0])
    _group_sums(group_of, _transposed(weight).numpy(), sums.numpy())
    output = torch.bmm(bits, sums).transpose(0, 1)  # [T, B, M]
    return output + bias if bias is not None else output.contiguous()


def grouped_weight_gradient(group_of: np.ndarray, bits: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
    """dL/dW ``[M, N]`` of :func:`grouped_product` from dL/dI ``grad_output`` ``[T, B, M]``:
    ``sum_t grad[t, b] * bit_t(p)`` per sample and pattern, added to the pattern's neurons."""
    per_group = torch.bmm(bits.transpose(1, 2), grad_output.detach().transpose(0, 1).float())  # [B, P, M]
    grad_weight_t = torch.zeros(group_of.shape[1], grad_output.shape[2])
    _use_torch_threads()
    _scatter_group_rows(group_of, per_group.contiguous().numpy(), grad_weight_t.numpy())
    return grad_weight_t.t()


def _csr_product(row_starts: np.ndarray, columns: np.ndarray, weight: torch.Tensor,
                 bias: torch.Tensor | None) -> torch.Tensor:
    """``S @ weight.T + bias`` for the 0/1 matrix S given as CSR (row starts, column indices)."""
    shape = (len(row_starts) - 1, weight.shape[1])
    with warnings.catch_warnings():  # "sparse CSR support is in beta": its product is tested here
        warnings.simplefilter("ignore", UserWarning)
        matrix = torch.sparse_csr_tensor(torch.from_numpy(row_starts.astype(np.int32)), torch.from_numpy(columns),
                                         torch.ones(len(columns)), size=shape, check_invariants=False)
    if bias is None:
        return torch.sparse.mm(matrix, _transposed(weight))
    return torch.addmm(bias, matrix, _transposed(weight))


def lif_csr_linear(current: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor, reset_to_zero: bool,
                   weight: torch.Tensor, bias: torch.Tensor | None,
                   max_density: float) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A LIF layer and the dense layer after it, the spikes passed as CSR without a dense copy.

    current: the LIF's input ``[T, B, ...]`` (an expanded static view allowed); weight
    ``[M, N]``, N neurons per sample. Returns ``(None, current [T, B, M])``, or, when more
    than ``max_density`` of the spikes are 1, ``(spikes [T, B, ...], None)`` for the dense
    product. The spikes are those of :func:`lif_spikes`.
    """
    _use_torch_threads()
    steps, batch, neuron_shape = current.shape[0], current.shape[1], current.shape[2:]
    flat = _sequence_rows(current)
    rows, neurons = steps * batch, flat.shape[2]
    columns = np.empty((rows, neurons), np.int32)
    counts = np.empty(rows, np.int64)
    _lif_sequence_columns(flat.numpy(), _per_neuron(beta, neuron_shape), _per_neuron(threshold, neuron_shape),
                          reset_to_zero, steps, columns, counts)
    if counts.sum() > max_density * rows * neurons:
        spikes = torch.zeros(rows, neurons)
        _unpack_rows(columns, counts, spikes.numpy())
        return spikes.reshape(steps, batch, *neuron_shape), None
    row_starts = np.zeros(rows + 1, np.int64)
    np.cumsum(counts, out=row_starts[1:])
    packed = np.empty(int(row_starts[-1]), np.int32)
    _pack_rows(columns, counts, row_starts, packed)
    return None, _csr_product(row_starts, packed, weight, bias).reshape(steps, batch, -1)
