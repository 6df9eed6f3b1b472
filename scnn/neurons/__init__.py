"""Spiking neurons behind one interface (:class:`SpikingNeuron`), created by name."""

from scnn.neurons.base import (NEURONS, RESET_MECHANISMS, SURROGATES, LifParameters, SpikingNeuron, create_neuron,
                               list_neurons, make_surrogate, register_neuron, reset_net)
from scnn.neurons.leaky import ENGINES, LIF, Leaky
from scnn.neurons.rleaky import RLeaky
from scnn.neurons.synaptic import Synaptic
from scnn.neurons.alif import ALIF

__all__ = ["ALIF", "RLeaky", "Synaptic", "NEURONS", "RESET_MECHANISMS", "SURROGATES", "ENGINES", "LIF", "Leaky", "LifParameters", "SpikingNeuron",
           "create_neuron", "list_neurons", "make_surrogate", "register_neuron", "reset_net"]
