"""Unsupervised adaptation to new voices: self-training on a checkpoint's own confident predictions.

A device that meets a new speaker hears their words without labels. Self-training (pseudo-labelling,
as in unsupervised speaker adaptation of speech recognisers) uses them: the trained model labels the
new speaker's recordings, the most confident share ``keep`` of them joins the training set with those
labels, and the model is fine-tuned for a few epochs on both (same augmentation, learning rate
``lr_factor`` times the run's, the run's schedule over the new epochs, last epoch kept: nothing is chosen on the labels). The
pseudo-labels are the class probabilities averaged over frequency warps (:mod:`scnn.train.warp_eval`)
when ``warp_spread`` > 0. The true labels are read only to report, afterwards, how many pseudo-labels
were right.

``balance=True`` assumes the new speakers' words follow the training set's class frequencies (FSDD: every
speaker says every digit equally often) and rebalances the probabilities before labelling (Sinkhorn-Knopp,
as in distribution alignment for semi-supervised learning): a digit the model over-predicts for this voice
gives its least certain recordings to the digits it under-predicts. ``rounds`` > 1 repeats the adaptation
with the pseudo-labels of the previous round's adapted model, each round trained again from the original
checkpoint (so only the labels improve, not the number of epochs).

``part="test"`` adapts to the test speakers and reports their accuracy; ``part="val"`` does the same
with the validation speakers, so that a recipe (whether to adapt, ``keep``, ``epochs``) is chosen on
validation. Cost: ``epochs`` more training epochs over the training set and the kept recordings.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch

from scnn.data.prepare import PreparedData, checkpoint_data, checkpoint_features
from scnn.features.torch_mfcc import fitted_batch, load_recordings
from scnn.io import save_checkpoint, write_json
from scnn.train.config import TrainConfig, resolve_device
from scnn.train.evaluate import checkpoint_run_config, load_trained_model, write_predictions
from scnn.train.run import library_versions
from scnn.train.warp_eval import check_audio_front_end, warp_averaged_probabilities, warp_factors


def confident_rows(probabilities: torch.Tensor, keep: float) -> torch.Tensor:
    """Indices (ascending) of the ``ceil(keep * N)`` rows of ``probabilities [N, classes]`` with the highest
    top probability (ties: the earlier row first)."""
    if not 0 < keep <= 1:
        raise ValueError(f"--keep must be in (0, 1], got {keep}")
    count = math.ceil(keep * len(probabilities))
    order = torch.sort(probabilities.max(1).values, descending=True, stable=True).indices
    return order[:count].sort().values


def balanced_probabilities(probabilities: torch.Tensor, prior: torch.Tensor, iterations: int = 200) -> torch.Tensor:
    """``probabilities [N, classes]`` scaled per class and per row (Sinkhorn-Knopp) so that each row still sums
    to 1 and the columns sum to ``N * prior / prior.sum()`` (``prior [classes]``: class counts or weights): the
    closest table, in the Kullback-Leibler sense, whose predicted class frequencies are the prior's."""
    table = probabilities.double().clamp_min(1e-12)
    target = prior.double() / prior.double().sum() * len(table)
    for _ in range(iterations):
        table = table * (target / table.sum(0))
        table = table / table.sum(1, keepdim=True)
    return table.to(probabilities.dtype)


def with_pseudo_labels(data: PreparedData, part: str, rows: torch.Tensor, labels: torch.Tensor,
                       recordings: list[torch.Tensor] | None = None) -> PreparedData:
    """``data`` whose training set also holds ``part``'s recordings ``rows`` with ``labels`` (features,
    waveforms, speakers and speaker statistics alike) and which has no validation set (the fit keeps its
    last epoch). recordings: all of ``part``'s recordings as read (read here when None)."""
    from scnn.features.speaker_norm import speaker_statistics
    from scnn.features.torch_mfcc import TorchMFCC

    x, _, files, speakers = data.part(part)
    index = rows.tolist()
    changes = {"train": (torch.cat([data.train[0], x[rows]]), torch.cat([data.train[1], labels])),
               "val": (data.val[0][:0], data.val[1][:0]),
               "train_files": data.train_files + [files[i] for i in index],
               "train_speakers": data.train_speakers + [speakers[i] for i in index]}
    if data.train_waveforms is not None:
        recordings = recordings if recordings is not None else load_recordings(files, data.feature_config)
        changes["train_waveforms"] = list(data.train_waveforms) + [recordings[i] for i in index]
        if data.train_speaker_stats is not None:  # the part's speakers' statistics of their clean features
            mode, count, seed = data.speaker_norm
            with torch.no_grad():
                raw = TorchMFCC(data.feature_config)(fitted_batch(recordings, data.feature_config)).numpy()
            mean, scale = speaker_statistics(raw, speakers, files, mode, count, seed)
            changes["train_speaker_stats"] = tuple(torch.cat([old, torch.from_numpy(new[rows.numpy()])])
                                                   for old, new in zip(data.train_speaker_stats, (mean, scale)))
    return dataclasses.replace(data, **changes)


def self_train(checkpoint: str | Path, out_dir: str | Path, part: str = "test", keep: float = 0.8, epochs: int = 10,
               lr_factor: float = 0.3, warp_spread: float = 0.1, balance: bool = False, rounds: int = 1,
               data_overrides: dict | None = None, device: str = "auto", progress: bool = False) -> dict:
    """Adapt ``checkpoint`` to the speakers of its ``part`` ("test" or "val") by self-training; returns
    and writes ``out_dir/adapt.json`` (accuracy on ``part`` before and after, plain and warp-averaged;
    the pseudo-labels' count and, for the record only, their accuracy), ``out_dir/adapted.pt`` (a checkpoint
    like the input's, ``scnn evaluate`` reads it) and ``out_dir/predictions.csv`` (``part``'s recordings,
    the adapted model's logits)."""
    if part not in ("test", "val"):
        raise ValueError(f"--on must be 'test' or 'val', got {part!r}")
    if epochs < 1:
        raise ValueError(f"--epochs must be at least 1, got {epochs}")
    if rounds < 1:
        raise ValueError(f"--rounds must be at least 1, got {rounds}")
    if not 0 < lr_factor <= 1:
        raise ValueError(f"--lr-factor must be in (0, 1], got {lr_factor}")
    factors = warp_factors(warp_spread) if warp_spread else [1.0]
    confident_rows(torch.ones(1, 1), keep)  # checks keep before anything is loaded
    model, saved = load_trained_model(checkpoint, resolve_device(device))
    config = TrainConfig(**{**saved["train_config"], "epochs": epochs, "lr": saved["train_config"]["lr"] * lr_factor,
                            "patience": 0})
    check_audio_front_end(checkpoint, checkpoint_features(saved))
    data = checkpoint_data(saved, data_overrides, progress, keep_waveforms=config.waveform_augmentation)
    held_out = data.part(part)
    labels = held_out.y
    if len(labels) == 0:
        raise ValueError(f"checkpoint {checkpoint}: no {'test' if part == 'test' else 'validation'} recordings "
                         f"to adapt to in {data.data_dir}")
    start = time.perf_counter()
    recordings = load_recordings(held_out.files, data.feature_config)
    waveforms = fitted_batch(recordings, data.feature_config)  # read once: labelled, trained on, scored again
    plain, averaged = warp_averaged_probabilities(model, data, part, factors, waveforms)
    before = {"plain": float((plain.argmax(1) == labels).float().mean()),
              "warp_average": float((averaged.argmax(1) == labels).float().mean())}
    prior = torch.bincount(data.train[1], minlength=averaged.shape[1]).float()

    from scnn.train.loop import fit

    original = {name: value.clone() for name, value in model.state_dict().items()}
    history = []
    for round_index in range(rounds):  # each round: label with the latest model, train from the original
        labelling = balanced_probabilities(averaged, prior) if balance else averaged
        rows = confident_rows(labelling, keep)
        pseudo = labelling.argmax(1)[rows]
        model.load_state_dict(original)
        torch.manual_seed(config.seed)
        model.train()
        fit(model, with_pseudo_labels(data, part, rows, pseudo, recordings), config, progress=progress,
            label=f"adapt round {round_index + 1} epoch" if rounds > 1 else "adapt epoch")
        model.eval()
        plain_after, averaged = warp_averaged_probabilities(model, data, part, factors, waveforms)
        history.append({"num_pseudo_labels": len(rows),
                        "pseudo_labels_per_class": torch.bincount(pseudo, minlength=len(prior)).tolist(),
                        "pseudo_label_accuracy": float((pseudo == labels[rows]).float().mean()),  # reported only
                        "accuracy_plain": float((plain_after.argmax(1) == labels).float().mean())})
    with torch.no_grad():
        logits = torch.cat([model(held_out.x[i:i + 256]).logits for i in range(0, len(held_out.x), 256)]).cpu()
    out_dir = Path(out_dir)
    write_predictions(out_dir / "predictions.csv", held_out.files, labels, logits.argmax(1), logits, data.class_names)
    save_checkpoint(out_dir / "adapted.pt", {**saved, "model_state": model.state_dict(),
                                             "adaptation": {"part": part, "keep": keep, "epochs": epochs,
                                                            "lr_factor": lr_factor, "warp_spread": warp_spread,
                                                            "balance": balance, "rounds": rounds,
                                                            "source": str(checkpoint)}})
    results = {
        "kind": "self_train", "checkpoint": str(checkpoint), "part": part, "keep": keep, "epochs": epochs,
        "lr": config.lr, "warp_factors": factors, "balance": balance, "rounds": history, "num": len(labels),
        "num_pseudo_labels": len(rows), "pseudo_label_accuracy": history[-1]["pseudo_label_accuracy"],
        "accuracy_before": before,
        "accuracy_after": {"plain": float((logits.argmax(1) == labels).float().mean()),
                           "plain_torch_front_end": history[-1]["accuracy_plain"],
                           "warp_average": float((averaged.argmax(1) == labels).float().mean())},
        "wall_time_s": time.perf_counter() - start,
        # the checkpoint's run config, its data as read here and its train section the adaptation's training
        "run_config": checkpoint_run_config(saved, data_overrides, train=config),
        "versions": library_versions()}
    write_json(out_dir / "adapt.json", results)
    return results
