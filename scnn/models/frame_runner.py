"""A lean frame-by-frame runner for streaming models: one sample, numpy, no autograd.

``StreamingNet.step`` advances every layer through torch modules, which is the definition and
what training uses, but for one sample and one frame nearly all of its time is operator dispatch,
not arithmetic (a frame of the ``streaming`` preset is about 60k multiply-adds). A
:class:`FrameRunner` reads the trained model once and then advances it with a few numpy
operations per layer, on float32 vectors:

    current[l] = A[l] @ x[l] + b[l]          every synapse as the affine map it is (convolution,
                                              flatten and dense layers alike), read once by probing
    x[l+1], U[l] = neuron[l].step(current[l])   the neuron's equations (its module docstring)

Synapses are read by probing: b = f(0) and column i of A = f(e_i) - b, checked on a random input
(a layer that is not affine, e.g. max pooling, is refused naming it). Neurons are translated by
:data:`FRAME_STEPS`, one small class per neuron type, registered with
:func:`register_frame_step`, each reading its neuron only through the neuron interface
(``neuron_parameters()``, ``reset_mechanism``, ``recurrent_synapses()``); a model with any other
neuron is refused naming it (the Streamer then keeps ``model.step``). Only the summation order of
the products differs from torch, so membranes agree to float32 rounding and spikes are the same
except for a membrane within rounding of its threshold (tested on the presets: equal spikes,
membranes within 1e-5).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from scnn.neurons.alif import ALIF
from scnn.neurons.leaky import LIF
from scnn.neurons.rleaky import RLeaky
from scnn.neurons.synaptic import Synaptic

FRAME_STEPS: dict[type, Callable] = {}


def register_frame_step(neuron_class: type) -> Callable[[type], type]:
    """Class decorator: the frame step of ``neuron_class``, built as ``cls(neuron, output_shape)``."""

    def register(cls: type) -> type:
        FRAME_STEPS[neuron_class] = cls
        return cls

    return register


def _per_neuron(value: torch.Tensor, shape: tuple[int, ...], low: float | None = None,
                high: float | None = None) -> np.ndarray:
    """A scalar or per-channel parameter broadcast to one value per neuron of a layer ``[prod(shape)]``."""
    value = value.detach().float()
    if low is not None or high is not None:
        value = value.clamp(low, high)
    return np.ascontiguousarray(np.broadcast_to(value.cpu().numpy(), shape).reshape(-1), dtype=np.float32)


def affine_map(module: Callable[[torch.Tensor], torch.Tensor], input_shape: tuple[int, ...],
               name: str) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """``module`` on one sample of ``input_shape`` as (A ``[n_out, n_in]``, b ``[n_out]``, output shape),
    with ``module(x).flatten() == A @ x.flatten() + b``; raises ValueError naming ``name`` if it is not affine."""
    n_in = int(np.prod(input_shape))
    with torch.no_grad():
        zero = module(torch.zeros(1, *input_shape))
        output_shape = tuple(zero.shape[1:])
        bias = zero.reshape(-1)
        columns = module(torch.eye(n_in).reshape(n_in, *input_shape)).reshape(n_in, -1) - bias
        matrix = columns.T.contiguous()
        probe = torch.randn(1, *input_shape, generator=torch.Generator().manual_seed(0))
        expected = module(probe).reshape(-1)
        got = matrix @ probe.reshape(-1) + bias
        if not torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * (1 + float(expected.abs().max()))):
            raise ValueError(f"{name}: the frame runner needs affine synapses (convolution, flatten, dense), "
                             f"and this one is not ({module})")
    return matrix.numpy().astype(np.float32), bias.numpy().astype(np.float32), output_shape


class FrameStep:
    """One neuron layer's per-frame update on a flat float32 vector; subclasses hold its state."""

    def reset(self) -> None:
        raise NotImplementedError

    def step(self, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """current ``[n]`` -> (spikes ``[n]`` as 0/1 float32, membrane ``[n]``)."""
        raise NotImplementedError


@register_frame_step(LIF)
class LeakyFrameStep(FrameStep):
    """snntorch.Leaky: R = H(U[t-1] - thr); U = beta U[t-1] + I - R thr (subtract) or beta (1 - R) U[t-1] + I (zero)."""

    def __init__(self, neuron: LIF, shape: tuple[int, ...]):
        parameters = neuron.lif_parameters()
        self.beta = _per_neuron(parameters.beta, shape, 0, 1)
        self.threshold = _per_neuron(parameters.threshold, shape)
        self.reset_to_zero = parameters.reset_to_zero
        self.size = self.beta.size
        self.reset()

    def reset(self) -> None:
        self.membrane = np.zeros(self.size, np.float32)

    def step(self, current):
        reset = (self.membrane > self.threshold).astype(np.float32)
        if self.reset_to_zero:
            self.membrane = self.beta * ((1 - reset) * self.membrane) + current
        else:
            self.membrane = self.beta * self.membrane + current - reset * self.threshold
        return (self.membrane > self.threshold).astype(np.float32), self.membrane


@register_frame_step(ALIF)
class AlifFrameStep(FrameStep):
    """scnn.neurons.ALIF (Bellec et al. 2018): adaptation A and threshold B = thr + b A (its docstring)."""

    def __init__(self, neuron: ALIF, shape: tuple[int, ...]):
        parameters = neuron.neuron_parameters()
        self.beta = _per_neuron(parameters["beta"], shape, 0, 1)
        self.threshold = _per_neuron(parameters["threshold"], shape)
        self.rho = _per_neuron(parameters["rho"], shape, 0, 1)
        self.adaptation = _per_neuron(parameters["adaptation"], shape, 0, None)
        self.reset_to_zero = neuron.reset_mechanism == "zero"
        self.size = self.beta.size
        self.reset()

    def reset(self) -> None:
        self.membrane = np.zeros(self.size, np.float32)
        self.level = np.zeros(self.size, np.float32)  # the adaptation state A
        self.spike = np.zeros(self.size, np.float32)

    def step(self, current):
        self.level = self.rho * self.level + (1 - self.rho) * self.spike
        threshold = self.threshold + self.adaptation * self.level
        if self.reset_to_zero:
            self.membrane = self.beta * (1 - self.spike) * self.membrane + current
        else:
            self.membrane = self.beta * self.membrane + current - self.spike * threshold
        self.spike = (self.membrane - threshold > 0).astype(np.float32)
        return self.spike, self.membrane


@register_frame_step(RLeaky)
class RLeakyFrameStep(FrameStep):
    """snntorch.RLeaky: U = beta U[t-1] + I + W_rec(S[t-1]) - R thr (subtract) or (1 - R)(...) (zero)."""

    def __init__(self, neuron: RLeaky, shape: tuple[int, ...]):
        parameters = neuron.neuron_parameters()
        self.beta = _per_neuron(parameters["beta"], shape, 0, 1)
        self.threshold = _per_neuron(parameters["threshold"], shape)
        self.reset_to_zero = neuron.reset_mechanism == "zero"
        (recurrent,) = neuron.recurrent_synapses()
        self.recurrent, self.recurrent_bias, _ = affine_map(recurrent, shape,
                                                            f"{type(neuron).__name__} recurrent weights")
        self.size = self.beta.size
        self.reset()

    def reset(self) -> None:
        self.membrane = np.zeros(self.size, np.float32)
        self.spike = np.zeros(self.size, np.float32)

    def step(self, current):
        reset = (self.membrane > self.threshold).astype(np.float32)
        base = self.beta * self.membrane + current + (self.recurrent @ self.spike + self.recurrent_bias)
        self.membrane = (1 - reset) * base if self.reset_to_zero else base - reset * self.threshold
        self.spike = (self.membrane > self.threshold).astype(np.float32)
        return self.spike, self.membrane


@register_frame_step(Synaptic)
class SynapticFrameStep(FrameStep):
    """snntorch.Synaptic: Syn = alpha Syn[t-1] + I; U = beta U[t-1] + Syn - R thr (subtract) or (1 - R)(...) (zero)."""

    def __init__(self, neuron: Synaptic, shape: tuple[int, ...]):
        parameters = neuron.neuron_parameters()
        self.alpha = _per_neuron(parameters["alpha"], shape, 0, 1)
        self.beta = _per_neuron(parameters["beta"], shape, 0, 1)
        self.threshold = _per_neuron(parameters["threshold"], shape)
        self.reset_to_zero = neuron.reset_mechanism == "zero"
        self.size = self.beta.size
        self.reset()

    def reset(self) -> None:
        self.membrane = np.zeros(self.size, np.float32)
        self.synaptic = np.zeros(self.size, np.float32)

    def step(self, current):
        reset = (self.membrane > self.threshold).astype(np.float32)
        self.synaptic = self.alpha * self.synaptic + current
        base = self.beta * self.membrane + self.synaptic
        self.membrane = (1 - reset) * base if self.reset_to_zero else base - reset * self.threshold
        return (self.membrane > self.threshold).astype(np.float32), self.membrane


class FrameRunner:
    """A frame-by-frame model (``encoding "frames"``, blocks synapse -> neuron, e.g. the streaming
    presets) run one frame at a time in numpy (see the module docstring).

    step(frame ``[F]`` float32) -> the readout membrane ``[classes]`` after that frame, as
    ``model.step(frame.view(1, 1, F)).logits[0]``; reset() starts from rest.
    """

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...] | None = None):
        blocks = getattr(model, "blocks", None)
        if blocks is None or getattr(getattr(model, "config", None), "encoding", None) != "frames":
            raise ValueError(f"the frame runner takes a model fed frame by frame (encoding 'frames', blocks of "
                             f"synapse -> neuron), not {type(model).__name__}")
        shape = tuple(input_shape or (1, model.config.input_shape[1], 1))
        self.synapses, self.neurons = [], []
        for index, block in enumerate(blocks):
            neuron = block.activation
            builder = FRAME_STEPS.get(type(neuron))
            if builder is None:
                raise ValueError(f"block {index}: no frame step for neuron {type(neuron).__name__} "
                                 f"(registered: {', '.join(sorted(c.__name__ for c in FRAME_STEPS))})")
            if not isinstance(block.pool, nn.Identity):
                raise ValueError(f"block {index}: the frame runner takes no pooling, got {block.pool}")
            matrix, bias, shape = affine_map(block.synapse, shape, f"block {index} synapse")
            self.synapses.append((matrix, bias))
            self.neurons.append(builder(neuron, shape))
        self.input_size = self.synapses[0][0].shape[1]

    def reset(self) -> None:
        for neuron in self.neurons:
            neuron.reset()

    def step(self, frame: np.ndarray) -> np.ndarray:
        x = np.asarray(frame, dtype=np.float32).reshape(-1)
        if x.size != self.input_size:
            raise ValueError(f"frame runner: a frame has {self.input_size} values, got {x.size}")
        membrane = x
        for (matrix, bias), neuron in zip(self.synapses, self.neurons):
            x, membrane = neuron.step(matrix @ x + bias)
        return membrane
