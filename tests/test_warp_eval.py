"""Test-time warp averaging (scnn.train.warp_eval): the grid, the averaging, the files and the CLI's checks."""

import csv

import pytest
import torch


def test_warp_grid_is_symmetric_and_contains_one():
    from scnn.train.warp_eval import warp_factors

    assert warp_factors(0.1) == pytest.approx([0.9, 0.92, 0.94, 0.96, 0.98, 1.0, 1.02, 1.04, 1.06, 1.08, 1.1])
    assert warp_factors(0.1, 0.05) == pytest.approx([0.9, 0.95, 1.0, 1.05, 1.1])
    assert warp_factors(0.1, 0.03) == pytest.approx([0.91, 0.94, 0.97, 1.0, 1.03, 1.06, 1.09])
    assert 1.0 in warp_factors(0.3, 0.07)


@pytest.mark.parametrize("spread, step, message", [
    (0.0, 0.02, "--warp-average must be in (0, 0.3], got 0.0"),
    (0.5, 0.02, "--warp-average must be in (0, 0.3], got 0.5"),
    (0.1, 0.0, "--warp-step must be in (0, --warp-average=0.1], got 0.0"),
    (0.1, 0.2, "--warp-step must be in (0, --warp-average=0.1], got 0.2"),
])
def test_bad_warp_grids_are_refused(spread, step, message):
    from scnn.train.warp_eval import warp_factors

    with pytest.raises(ValueError) as error:
        warp_factors(spread, step)
    assert str(error.value) == message


@pytest.fixture(scope="module")
def checkpoint_parts(tiny_snn_run):
    from scnn.data.prepare import checkpoint_data
    from scnn.features.torch_mfcc import fitted_batch, load_recordings
    from scnn.io import load_checkpoint
    from scnn.train.evaluate import load_trained_model

    checkpoint = tiny_snn_run / "best.pt"
    model, _ = load_trained_model(checkpoint, "cpu")
    data = checkpoint_data(load_checkpoint(checkpoint), None, False)
    waveforms = fitted_batch(load_recordings(data.val_files, data.feature_config), data.feature_config)
    return checkpoint, model, data, waveforms


def test_unwarped_torch_front_end_predicts_as_the_cached_features(checkpoint_parts):
    from scnn.train.warp_eval import warped_log_probabilities

    _, model, data, waveforms = checkpoint_parts
    plain = warped_log_probabilities(model, waveforms, data, "val", 1.0).argmax(1)
    with torch.no_grad():
        cached = model(data.val[0]).logits.argmax(1)
    assert (plain == cached).float().mean() >= 0.99  # librosa and the torch front end differ in float rounding only


def test_average_is_the_mean_of_the_warped_probabilities(checkpoint_parts):
    from scnn.train.warp_eval import warp_averaged_probabilities, warped_log_probabilities

    _, model, data, waveforms = checkpoint_parts
    each = {f: warped_log_probabilities(model, waveforms, data, "val", f).exp() for f in (0.9, 1.0, 1.1)}
    assert not torch.allclose(each[0.9], each[1.0], atol=1e-3)  # the warp changes what the model sees
    plain, averaged = warp_averaged_probabilities(model, data, "val", [0.9, 1.0, 1.1])
    torch.testing.assert_close(plain, each[1.0])
    torch.testing.assert_close(averaged, (each[0.9] + each[1.0] + each[1.1]) / 3)
    torch.testing.assert_close(averaged.sum(1), torch.ones(len(averaged)))
    _, alone = warp_averaged_probabilities(model, data, "val", [1.0])
    torch.testing.assert_close(alone, plain)


def test_warp_average_evaluation_writes_both_parts(checkpoint_parts, tmp_path):
    from scnn.train.warp_eval import warp_average_evaluation

    checkpoint, _, data, _ = checkpoint_parts
    results = warp_average_evaluation(checkpoint, tmp_path, spread=0.1, step=0.05, device="cpu")
    assert results["factors"] == pytest.approx([0.9, 0.95, 1.0, 1.05, 1.1])
    assert set(results["parts"]) == {"val", "test"}
    assert results["parts"]["test"]["num"] == len(data.test_files) == 300
    assert results["parts"]["val"]["num"] == len(data.val_files)
    with open(tmp_path / "predictions_warp_average.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["file"] for row in rows] == data.test_files
    correct = sum(row["label"] == row["prediction"] for row in rows)
    assert correct / len(rows) == pytest.approx(results["parts"]["test"]["warp_average_accuracy"])
    assert all(abs(sum(float(v) for k, v in row.items() if k.startswith("score_")) - 1) < 1e-4 for row in rows)
    assert (tmp_path / "warp_average.json").exists()


def test_features_not_computed_from_audio_are_refused_naming_the_checkpoint():
    from scnn.features.mfcc import feature_config
    from scnn.train.warp_eval import check_audio_front_end

    with pytest.raises(ValueError, match="checkpoint runs/shd/best.pt: .* representation='events'"):
        check_audio_front_end("runs/shd/best.pt", feature_config("events"))
    check_audio_front_end("runs/b/best.pt", feature_config("default"))  # MFCCs: accepted


def test_evaluate_refuses_a_bad_warp_spread_before_evaluating(capsys, tmp_path):
    from scnn.cli import main

    with pytest.raises(SystemExit):
        main(["evaluate", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "out"),
              "--warp-average", "0.4"])
    error = capsys.readouterr().err
    assert "--warp-average must be in (0, 0.3], got 0.4" in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists()
