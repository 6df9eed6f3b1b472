"""How a network of (synapse, neuron) blocks runs over time: the one place that picks its execution paths.

A model describes its network as a sequence of blocks and hands them, with its input, to
:func:`run_blocks`; its forward then says only what the network computes. A block (duck-typed: the
engine imports no model and no neuron) has ``synapse`` (convolution or dense layer), ``pool``, ``dropout``,
``activation`` (the neuron), ``current(x)`` (its synapse, pooling and dropout on ``[N, ...]``) and
``spike_current(spikes)`` (the same on 0/1 spikes; in training the synapse keeps them as bool).

The input is static ``[B, ...]`` (direct encoding: the same at each of ``steps`` steps) or a sequence
``[T, B, ...]`` (one input per step). For each block, in order:

* static input, first block: its synapse runs once and its current is seen at every step (hoisted,
  a stride-0 view over T). In training, when :func:`~scnn.engine.policy.grouped_training_applies`, the
  first neuron and the dense block after it run as one grouped product and the neuron's spikes are
  never materialised;
* any other block: its synapse over ``[T * B, ...]`` (time folded into the batch); the first block of a
  frame sequence may run its one-column convolution as one product (inference,
  :mod:`scnn.engine.column_conv`);
* inference: a neuron that is a first-order LIF and the dense block after it fused on a compiled path
  (:func:`~scnn.engine.policy.lif_into_dense`);
* otherwise the neuron's own multi-step forward, which picks its fused kernel; it may keep its
  membranes in the synapse's output (``overwrite_current``) when nobody else reads that buffer.

Hooks on a block (forward hooks, e.g. the dynamics recorder) switch off the paths that would skip it.
"""

from __future__ import annotations

import torch
from torch import nn

from scnn.engine import policy
from scnn.engine.column_conv import column_conv, column_conv_applies


def run_blocks(blocks, x: torch.Tensor, steps: int | None = None,
               record: bool = False) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Run ``blocks`` on ``x``: a sequence ``[T, B, ...]`` (``steps`` None) or a static input ``[B, ...]``
    seen at each of ``steps`` steps. Returns the last block's spikes and membranes ``[T, B, ...]`` and,
    when ``record``, every block's spikes (paths that skip a block's spikes are then off)."""
    layer_spikes, last = [], len(blocks) - 1
    position, current, spikes, membrane = 0, None, x, None
    if steps is not None:
        position, current = _hoisted_first_block(blocks, x, steps, record)
    while position <= last:
        block = blocks[position]
        if current is None:
            current = sequence_current(block, spikes, first=position == 0)
        if not record and position < last:
            fused_spikes, next_current = policy.lif_into_dense(block.activation, current, blocks[position + 1])
            if fused_spikes is not None or next_current is not None:  # this neuron ran fused with the next synapse
                spikes, current, position = fused_spikes, next_current, position + 1
                continue
        # Hidden membranes are only returned when recording (dynamics hooks read them). A synapse's
        # output is read by nobody but the neuron, which may keep its membranes in it.
        scratch = torch.is_grad_enabled() and (position > 0 or steps is None) and not policy.observed(block)
        spikes, membrane = block.activation(current, return_membrane=record or position == last,
                                            overwrite_current=scratch)
        current, position = None, position + 1
        if record:
            layer_spikes.append(spikes)
    return spikes, membrane, layer_spikes


def _hoisted_first_block(blocks, x: torch.Tensor, steps: int, record: bool) -> tuple[int, torch.Tensor]:
    """Static input ``[B, ...]``: the first synapse runs once. Returns ``(position, current)``: ``(0, its
    current expanded over the steps)``, or ``(1, the second block's current)`` when the first neuron and
    the dense block after it train as one grouped product."""
    static = blocks[0].current(x)
    if not record and len(blocks) > 1 and policy.grouped_training_applies(blocks[0].activation, static, steps,
                                                                        blocks[1]):
        return 1, policy.static_lif_into_dense_training(blocks[0].activation, static, steps, blocks[1])
    return 0, static.unsqueeze(0).expand(steps, *static.shape)


def sequence_current(block, x: torch.Tensor, first: bool) -> torch.Tensor:
    """A block's input current ``[T, B, ...]`` from ``x [T, B, ...]``: the network's input (``first``: real
    values) or the previous block's spikes. Time folds into the batch: synapses are stateless."""
    steps, batch = x.shape[:2]
    folded = x.reshape(steps * batch, *x.shape[2:])
    if first:
        conv = _synapse_alone(block)
        if (conv is not None and policy.fast_inference_applies(folded) and column_conv_applies(conv, folded)
                and not policy.observed(block)):
            current = column_conv(conv, folded)  # inference: a frame's convolution as one product
        else:
            current = block.current(folded)
    else:
        current = block.spike_current(folded)
    return current.reshape(steps, batch, *current.shape[1:])


def _synapse_alone(block) -> nn.Module | None:
    """The block's synapse when its current is that layer alone (no pooling, dropout idle), else None."""
    if not isinstance(block.pool, nn.Identity):
        return None
    if block.training and not isinstance(block.dropout, nn.Identity):
        return None
    return block.synapse
