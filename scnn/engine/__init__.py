"""The fast multi-step engine: fused LIF kernels, spike synapses, compiled inference paths.

The engine works on tensors and on the neuron interface's :meth:`lif_parameters`; it never
imports :mod:`scnn.neurons` (the neurons import it and pick their fast path). A model hands its
blocks (synapse -> neuron) to :func:`scnn.engine.network.run_blocks`, which picks how they run over time.
"""

from scnn.engine.policy import fast_inference, keep_freed_memory

__all__ = ["fast_inference", "keep_freed_memory"]
