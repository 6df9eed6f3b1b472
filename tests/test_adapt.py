"""Self-training adaptation (scnn.train.adapt, scnn adapt): which rows, what joins training, what is written."""

import math

import numpy as np
import pytest
import torch


def test_confident_rows_are_the_most_confident_share_ties_to_the_earlier_row():
    from scnn.train.adapt import confident_rows

    probabilities = torch.tensor([[0.6, 0.4], [0.9, 0.1], [0.2, 0.8], [0.5, 0.5], [0.1, 0.9]])
    assert confident_rows(probabilities, 0.4).tolist() == [1, 4]  # top 0.9 twice: both kept
    assert confident_rows(probabilities, 0.5).tolist() == [1, 2, 4]  # ceil(2.5) = 3 rows
    assert confident_rows(probabilities, 0.2).tolist() == [1]  # the tie 0.9 / 0.9 goes to the earlier row
    assert confident_rows(probabilities, 1.0).tolist() == [0, 1, 2, 3, 4]
    for keep in (0.0, 1.5):
        with pytest.raises(ValueError, match=f"--keep must be in \\(0, 1\\], got {keep}"):
            confident_rows(probabilities, keep)


def test_balancing_moves_the_least_certain_rows_of_an_over_predicted_class():
    from scnn.train.adapt import balanced_probabilities

    # four recordings all predicted class 0, two classes equally frequent in training: the two whose
    # odds for class 0 are lowest (1.5 and 1.22 against 9 and 4) go to class 1
    probabilities = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.55, 0.45]])
    balanced = balanced_probabilities(probabilities, torch.tensor([5.0, 5.0]))
    assert balanced.argmax(1).tolist() == [0, 0, 1, 1]
    torch.testing.assert_close(balanced.sum(0), torch.tensor([2.0, 2.0]))
    torch.testing.assert_close(balanced.sum(1), torch.ones(4))
    # odds between classes keep their order within each row's scaling: the rows' ranking by odds is unchanged
    odds = balanced[:, 0] / balanced[:, 1]
    assert torch.all(odds[:-1] > odds[1:])
    # any prior: the columns sum to N * prior; a table that already follows the prior stays as it is
    generator = torch.Generator().manual_seed(0)
    table = torch.softmax(3 * torch.randn(200, 10, generator=generator), 1)
    prior = torch.arange(1.0, 11.0)
    torch.testing.assert_close(balanced_probabilities(table, prior).sum(0), 200 * prior / prior.sum(),
                               rtol=1e-4, atol=1e-3)
    uniform = torch.full((6, 3), 1 / 3)
    torch.testing.assert_close(balanced_probabilities(uniform, torch.ones(3)), uniform)


@pytest.fixture(scope="module")
def speaker_normalised_data(tiny_snn_run):
    """The tiny run's data again, with speaker-level CMN and the training waveforms kept."""
    from scnn.data.prepare import checkpoint_data
    from scnn.io import load_checkpoint

    return checkpoint_data(load_checkpoint(tiny_snn_run / "best.pt"), {"speaker_norm": "mean"}, keep_waveforms=True)


def test_pseudo_labelled_rows_join_training_with_their_speakers_statistics(speaker_normalised_data):
    from scnn.features.mfcc import load_audio, waveform_to_mfcc
    from scnn.features.speaker_norm import speaker_statistics
    from scnn.train.adapt import with_pseudo_labels

    data = speaker_normalised_data
    rows = torch.tensor([0, 5, 17])
    labels = torch.tensor([3, 3, 7])
    adapted = with_pseudo_labels(data, "val", rows, labels)
    n = len(data.train[1])
    assert len(adapted.train[1]) == n + 3 and adapted.train[1][n:].tolist() == [3, 3, 7]
    torch.testing.assert_close(adapted.train[0][n:], data.val[0][rows])
    assert adapted.train_files[n:] == [data.val_files[i] for i in rows.tolist()]
    assert adapted.train_speakers[n:] == [data.val_speakers[i] for i in rows.tolist()]
    assert len(adapted.train_waveforms) == n + 3 and len(adapted.val[1]) == 0
    assert adapted.train_waveforms[n + 1].shape == (len(load_audio(data.val_files[5], 8000)),)
    # each added row carries its speaker's mean over that speaker's validation recordings (librosa features)
    config = data.feature_config
    raw = np.stack([waveform_to_mfcc(load_audio(f, config.sample_rate), config) for f in data.val_files])
    mean, _ = speaker_statistics(raw, data.val_speakers, data.val_files, "mean")
    np.testing.assert_allclose(adapted.train_speaker_stats[0][n:].numpy(), mean[rows.numpy()], atol=2e-3)
    assert torch.equal(adapted.train_speaker_stats[0][:n], data.train_speaker_stats[0])


def test_self_training_adapts_and_writes_a_checkpoint_that_evaluates_the_same(tiny_snn_run, tmp_path):
    from scnn.io import load_checkpoint
    from scnn.train.adapt import self_train
    from scnn.train.evaluate import evaluate, load_trained_model

    checkpoint = tiny_snn_run / "best.pt"
    results = self_train(checkpoint, tmp_path / "a", part="val", keep=0.5, epochs=1, warp_spread=0.0, device="cpu")
    assert results["num_pseudo_labels"] == math.ceil(0.5 * results["num"])
    assert results["lr"] == pytest.approx(0.3 * load_checkpoint(checkpoint)["train_config"]["lr"])
    before, _ = load_trained_model(checkpoint, "cpu")
    after, saved = load_trained_model(tmp_path / "a" / "adapted.pt", "cpu")
    assert saved["adaptation"]["part"] == "val"
    assert any(not torch.equal(p, q) for p, q in zip(before.state_dict().values(), after.state_dict().values()))
    from scnn.data.prepare import checkpoint_data

    data = checkpoint_data(saved)
    assert evaluate(after, *data.val, num_classes=10)["accuracy"] == pytest.approx(results["accuracy_after"]["plain"])
    assert evaluate(before, *data.val, num_classes=10)["accuracy"] == pytest.approx(results["accuracy_before"]["plain"],
                                                                                    abs=0.011)  # torch front end
    assert (tmp_path / "a" / "predictions.csv").read_text().count("\n") == results["num"] + 1
    # a second round starts again from the checkpoint: its first round is the one-round run (same seed, same
    # adaptation), and adapted.pt holds the second round's model
    again = self_train(checkpoint, tmp_path / "b", part="val", keep=0.5, epochs=1, warp_spread=0.0, rounds=2,
                       device="cpu")
    assert len(again["rounds"]) == 2 and again["rounds"][0] == results["rounds"][0]
    assert results["rounds"][0]["accuracy_plain"] == results["accuracy_after"]["plain_torch_front_end"]
    second, _ = load_trained_model(tmp_path / "b" / "adapted.pt", "cpu")
    assert evaluate(second, *data.val, num_classes=10)["accuracy"] == pytest.approx(again["rounds"][1]["accuracy_plain"])


def test_balanced_self_training_labels_with_the_rebalanced_probabilities(tiny_snn_run, tmp_path):
    from scnn.data.prepare import checkpoint_data
    from scnn.train.adapt import balanced_probabilities, self_train
    from scnn.train.evaluate import load_trained_model
    from scnn.train.warp_eval import warp_averaged_probabilities

    checkpoint = tiny_snn_run / "best.pt"
    results = self_train(checkpoint, tmp_path / "a", part="val", keep=1.0, epochs=1, warp_spread=0.0, balance=True,
                         device="cpu")
    model, saved = load_trained_model(checkpoint, "cpu")
    data = checkpoint_data(saved)
    _, probabilities = warp_averaged_probabilities(model, data, "val", [1.0])
    prior = torch.bincount(data.train[1], minlength=10).float()
    expected = torch.bincount(balanced_probabilities(probabilities, prior).argmax(1), minlength=10)
    assert results["balance"] and results["rounds"][0]["pseudo_labels_per_class"] == expected.tolist()
    assert sum(expected.tolist()) == results["num"]
    # the one-epoch model over-predicts some digits: without balancing the labels would differ
    assert torch.bincount(probabilities.argmax(1), minlength=10).tolist() != expected.tolist()


def test_self_training_refuses_bad_settings_before_loading(tmp_path):
    from scnn.train.adapt import self_train

    missing = tmp_path / "none.pt"
    for kwargs, message in [({"part": "train"}, "--on must be 'test' or 'val'"), ({"epochs": 0}, "--epochs must be"),
                            ({"lr_factor": 2.0}, "--lr-factor must be in"), ({"keep": 0.0}, "--keep must be in"),
                            ({"warp_spread": 0.5}, "--warp-average must be in"), ({"rounds": 0}, "--rounds must be")]:
        with pytest.raises(ValueError, match=message):
            self_train(missing, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()
