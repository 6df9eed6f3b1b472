"""Models: spec parsing, exact parameter counts, snntorch equivalence, single vs multi-step."""

import pytest
import snntorch
import torch

from scnn.models import NetOutput, count_parameters, create_model, model_from_dict, model_to_dict, parse_spec
from scnn.neurons import LIF, reset_net


@pytest.mark.parametrize("name, expected", [("model_a", 1_615_606), ("model_b", 692_678), ("control_cnn", 83_702)])
def test_exact_parameter_counts_on_32x32(name, expected):
    assert count_parameters(create_model(name)) == expected


def test_spec_parsing_and_errors():
    layers = parse_spec("6C3-P2-16c3-128FC-10FC")
    assert [(l.kind, l.size, l.kernel) for l in layers] == [
        ("conv", 6, 3), ("pool", 0, 2), ("conv", 16, 3), ("fc", 128, 0), ("fc", 10, 0)]
    for bad, message in [("6C3-X5-10FC", "X5"), ("6C3-16C3", "last layer"), ("P2-10FC", "start"),
                         ("10FC-6C3-10FC", "after a dense"), ("0C3-10FC", "positive")]:
        with pytest.raises(ValueError, match=message):
            parse_spec(bad)


def test_registry_overrides_and_unknown_names():
    model = create_model("model_b", num_steps=4, beta=0.8, threshold=0.7)
    assert model.config.num_steps == 4 and model.lif_layers()[0].beta.item() == pytest.approx(0.8)
    assert count_parameters(create_model("6C3-P2-32FC-10FC")) == 60 + 6 * 15 * 15 * 32 + 32 + 330
    with pytest.raises(TypeError, match="no option"):
        create_model("model_b", betta=0.5)
    with pytest.raises(ValueError, match="unknown model"):
        create_model("model_z")
    with pytest.raises(ValueError, match="beta"):
        create_model("model_b", beta=1.5)


def test_model_rebuilds_from_its_description():
    model = create_model("model_a", num_steps=3, per_channel_beta=True)
    clone = model_from_dict(model_to_dict(model))
    clone.load_state_dict(model.state_dict())
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(model(x).logits, clone(x).logits)


def _reference_forward(model, x):
    """The reference code's loop: every layer, every step, snntorch.Leaky with explicit state."""
    leaky_layers = [block.activation.leaky for block in model.blocks]
    membranes = [None] * len(leaky_layers)
    spikes_out, membrane_out = [], []
    for _ in range(model.config.num_steps):
        h = x
        for index, block in enumerate(model.blocks):
            current = block.current(h)
            if membranes[index] is None:
                membranes[index] = torch.zeros_like(current)
            h, membranes[index] = leaky_layers[index](current, membranes[index])
        spikes_out.append(h)
        membrane_out.append(membranes[-1])
    return torch.stack(spikes_out), torch.stack(membrane_out)


@pytest.mark.parametrize("name", ["model_a", "model_b"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_multi_step_matches_step_by_step_snntorch(name, reset):
    torch.manual_seed(0)
    model = create_model(name, num_steps=5, reset_mechanism=reset, beta=0.7, threshold=0.5)
    x = torch.randn(3, 1, 32, 32) * 2
    output = model(x)
    spikes, membrane = _reference_forward(model, x)
    assert output.spikes.sum() > 0
    assert torch.equal(output.spikes, spikes)
    assert torch.allclose(output.membrane, membrane, atol=1e-5)


def test_single_step_mode_agrees_with_multi_step():
    torch.manual_seed(1)
    model = create_model("model_a", num_steps=6)
    x = torch.randn(2, 1, 32, 32) * 3
    output = model(x)
    reset_net(model)
    steps = [model.step(x) for _ in range(6)]
    assert torch.equal(torch.cat([s.spikes for s in steps]), output.spikes)
    assert torch.allclose(torch.cat([s.membrane for s in steps]), output.membrane, atol=1e-6)
    reset_net(model)
    assert all(layer.membrane is None for layer in model.lif_layers())


def test_lif_is_snntorch_leaky_per_channel_beta():
    torch.manual_seed(2)
    lif = LIF(beta=0.9, threshold=0.8, num_channels=4, channel_dims=2)
    assert lif.beta.shape == (4, 1, 1)
    current = torch.rand(7, 2, 4, 3, 3)
    spikes, membrane = lif(current)
    reference = snntorch.Leaky(beta=torch.full((4, 1, 1), 0.9), threshold=0.8)
    mem = torch.zeros_like(current[0])
    for t in range(7):
        spk, mem = reference(current[t], mem)
        assert torch.equal(spikes[t], spk) and torch.allclose(membrane[t], mem)


def test_outputs_shapes_and_recording():
    model = create_model("model_b", num_steps=4)
    output = model(torch.randn(5, 1, 32, 32), record=True)
    assert isinstance(output, NetOutput)
    assert output.logits.shape == (5, 10) and output.spikes.shape == (4, 5, 10)
    assert [s.shape for s in output.layer_spikes] == [(4, 5, 6, 30, 30), (4, 5, 128), (4, 5, 10)]
    assert set(torch.unique(output.layer_spikes[0]).tolist()) <= {0.0, 1.0}
    control = create_model("control_cnn")
    assert control(torch.randn(5, 1, 32, 32)).logits.shape == (5, 10)


def test_gradients_flow_through_surrogate():
    model = create_model("model_a", num_steps=3)
    model(torch.randn(4, 1, 32, 32) * 3).logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.blocks[0].synapse.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------- input kinds


def test_every_model_family_states_its_input_kind():
    from scnn.features.encoders import INPUT_KINDS, get_encoder
    from scnn.models import MODEL_FAMILIES, list_models, register_family

    for family, (_, builder) in MODEL_FAMILIES.items():
        assert hasattr(builder, "input_kind") and hasattr(builder, "encoding"), family
    for name in list_models():
        model = create_model(name)
        assert model.input_kind in INPUT_KINDS and get_encoder(model.encoding).name == model.encoding, name
    kinds = {name: create_model(name).input_kind for name in ("model_b", "control_cnn", "ssm_small", "streaming")}
    assert kinds == {"model_b": "static", "control_cnn": "static", "ssm_small": "sequence", "streaming": "sequence"}
    for overrides in ({"encoding": "frames"}, {"encoding": "rate"}, {"encoding": "delta"}, {"input_kind": "sequence"}):
        assert create_model("model_b", **overrides).input_kind == "sequence", overrides

    class Silent(torch.nn.Module):
        def __init__(self, config):
            super().__init__()

    with pytest.raises(TypeError, match="model family 'silent': Silent states no input_kind"):
        register_family("silent", dict, Silent)
    assert "silent" not in MODEL_FAMILIES


def test_frames_encoding_feeds_one_frame_per_step():
    """model.encoding=frames: prepared features [B, C, F, W] reach the network as [T=W, B, C, F, 1]; the
    layers are built on one frame (a 3x3 kernel is 3x1) and static features or their frames give the same."""
    from scnn.features.encoders import model_input

    torch.manual_seed(0)
    model = create_model("model_b", encoding="frames", num_classes=4)
    assert model.input_kind == "sequence" and model.num_steps == 32 and model.step_shape == (1, 32, 1)
    assert model.blocks[0].synapse.kernel_size == (3, 1)
    assert count_parameters(model) == (6 * 3 + 6) + (6 * 30 * 128 + 128) + (128 * 4 + 4)
    x = torch.randn(5, 1, 32, 32) * 3
    sequence = model_input(model, x)
    assert sequence.shape == (32, 5, 1, 32, 1)
    seen = []
    hook = model.blocks[0].activation.register_forward_hook(lambda module, args, out: seen.append(args[0].shape))
    output = model(x, record=True)
    hook.remove()
    assert seen == [(32, 5, 6, 30, 1)] and output.spikes.shape == (32, 5, 4) and output.layer_spikes[0].sum() > 0
    assert torch.equal(model(sequence).logits, output.logits)
    with torch.no_grad():  # the inference paths too
        assert torch.allclose(model.eval()(x).logits, output.logits, atol=1e-4)
    pooled = create_model("6C3-P2-16C3-32FC-4FC", encoding="frames")
    assert pooled.blocks[0].pool.kernel_size == (2, 1) and pooled(x).logits.shape == (5, 4)


@pytest.mark.parametrize("encoding", ["frames", "delta"])
def test_frames_are_causal(encoding):
    """Changing a later frame changes no earlier output: the readout membrane of every earlier step stays."""
    torch.manual_seed(0)
    model = create_model("6C3-P2-16C3-32FC-4FC", encoding=encoding, beta=0.9, threshold=0.5).eval()
    x = torch.randn(3, 1, 32, 32) * 3
    later = x.clone()
    later[..., 20:] = torch.randn(3, 1, 32, 12) * 3
    with torch.no_grad():
        before, after = model(x).membrane, model(later).membrane
    assert torch.equal(before[:20], after[:20]) and not torch.equal(before[20:], after[20:])


def test_the_ssm_takes_its_features_or_their_frames():
    from scnn.features.encoders import frames

    torch.manual_seed(0)
    model = create_model("ssm_tiny", num_classes=4).eval()
    x = torch.randn(3, 1, 32, 32)
    assert model.input_kind == "sequence" and model.encoding == "frames"
    assert torch.equal(model(frames(x, 0)).logits, model(x).logits)


def test_a_sequence_model_without_a_sequence_encoding_refuses_static_features():
    model = create_model("model_b", input_kind="sequence", num_steps=4)
    with pytest.raises(ValueError, match=r"input_kind 'sequence' takes \[T, B, C, H, W\], got \(2, 1, 32, 32\); "
                                         r"static features need a sequence encoding \(encoding=frames"):
        model(torch.zeros(2, 1, 32, 32))
    framed = create_model("model_b", input_kind="sequence", encoding="frames")
    assert framed(torch.randn(2, 1, 32, 32)).spikes.shape == (32, 2, 10)
