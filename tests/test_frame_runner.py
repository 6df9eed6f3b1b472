"""The numpy frame runner steps a streaming model as model.step does: same spikes, same readout."""

import numpy as np
import pytest
import torch

import scnn.models  # noqa: F401  (registers the presets)
from scnn.models.frame_runner import FRAME_STEPS, FrameRunner
from scnn.models.registry import create_model
from scnn.neurons.base import reset_net

CONFIGS = [
    ("streaming", {}),
    ("streaming", {"reset_mechanism": "zero", "learn_threshold": True}),
    ("streaming", {"neuron": "synaptic"}),
    ("streaming", {"neuron": "synaptic", "reset_mechanism": "zero"}),
    ("streaming", {"conv_neuron": "rleaky", "neuron": "leaky"}),
    ("streaming_rleaky", {}),
    ("streaming_rleaky", {"reset_mechanism": "zero", "neuron_options": {"all_to_all": False}}),
]


def _trained_looking(model: torch.nn.Module, seed: int) -> None:
    """Spread every neuron parameter off its default, within its range, so per-channel values matter."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("beta", "rho", "alpha")):
                parameter.copy_(torch.rand(parameter.shape, generator=generator) * 0.6 + 0.3)
            elif name.endswith(("threshold", "adaptation")):
                parameter.copy_(torch.rand(parameter.shape, generator=generator) + 0.5)


@pytest.mark.parametrize("preset, options", CONFIGS)
def test_the_frame_runner_steps_like_the_model(preset, options):
    torch.manual_seed(0)
    model = create_model(preset, hidden=(48, 32), **options).eval()
    _trained_looking(model, 1)
    runner = FrameRunner(model)
    frames = torch.randn(40, 20, generator=torch.Generator().manual_seed(2)) * 3
    spikes_model, spikes_runner = [], []
    for repeat in range(2):  # reset() starts both from rest again
        reset_net(model)
        runner.reset()
        expected, got = [], []
        with torch.no_grad():
            for frame in frames:
                output = model.step(frame.view(1, 1, 20))
                expected.append(output.logits[0].numpy())
                got.append(runner.step(frame.numpy()))
                spikes_model.append([neuron.state.get("spike") for neuron in model.neurons()])
        expected, got = np.stack(expected), np.stack(got)
        assert np.allclose(got, expected, atol=1e-5), np.abs(got - expected).max()
        assert np.ptp(expected, axis=0).max() > 0.1  # the readout moves: hidden layers spiked
    # hidden spikes: the runner's last spikes equal the model's where the neuron keeps them
    for neuron, step in zip(model.neurons(), runner.neurons):
        kept = neuron.state.get("spike")
        if kept is not None and hasattr(step, "spike"):
            assert np.array_equal(kept.reshape(-1).numpy(), step.spike)


def test_every_neuron_of_the_toolkit_has_a_frame_step():
    from scnn.neurons.base import NEURONS

    assert {NEURONS[name] for name in NEURONS} <= set(FRAME_STEPS)


def test_the_frame_runner_refuses_what_it_cannot_run():
    with pytest.raises(ValueError, match="fed frame by frame"):
        FrameRunner(create_model("model_b"))
    model = create_model("streaming", hidden=(16,)).eval()
    runner = FrameRunner(model)
    with pytest.raises(ValueError, match="a frame has 20 values, got 19"):
        runner.step(np.zeros(19, np.float32))
    model.blocks[1].pool = torch.nn.MaxPool1d(2)
    with pytest.raises(ValueError, match="block 1: the frame runner takes no pooling"):
        FrameRunner(model)
