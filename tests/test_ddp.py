"""Data-parallel training (scnn.train.distributed): two gloo processes on the loopback reach the weights of
one process with the same global batch, rank 0 alone writes the run folder, and a resume continues it."""

import json

import pytest
import torch

from scnn.cli import main
from scnn.data.fixtures import write_heidelberg_files
from scnn.io import load_checkpoint
from scnn.train.distributed import World, threads_per_process


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_local_slices_cover_every_batch_once_in_order(world_size):
    for batch in range(0, 9):
        parts = [World(rank, world_size).local_slice(batch) for rank in range(world_size)]
        covered = [i for part in parts for i in range(batch)[part]]
        assert covered == list(range(batch))  # contiguous, disjoint, in rank order
        sizes = [len(range(batch)[part]) for part in parts]
        assert max(sizes) - min(sizes) <= 1


def test_threads_are_shared_out_unless_given():
    assert threads_per_process(2, requested=3) == 3
    assert threads_per_process(10_000) == 1  # never zero
    assert World().sum_values(2.5, 3) == [2.5, 3]  # a single process sums nothing


def _sgd_epoch(out_file: str) -> None:
    """One epoch of train_epoch with plain SGD (sensitive to the gradient's scale, where Adam is not) on
    15 random samples in global batches of 7, 7 and 1; rank 0 (or the single process) saves the weights."""
    from scnn.models import create_model
    from scnn.train.config import TrainConfig
    from scnn.train.distributed import current_world, init_from_environment
    from scnn.train.loop import train_epoch
    from scnn.train.losses import make_loss

    init_from_environment("cpu", threads=1)
    torch.manual_seed(0)
    x, y = torch.randn(15, 1, 8, 8), torch.arange(15) % 3
    model = create_model("4C3-8FC-3FC", input_shape=(1, 8, 8), num_classes=3, num_steps=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    config = TrainConfig(batch_size=7, grad_clip=0.0, time_shift=2, time_mask=2, freq_mask=2)
    order = torch.randperm(15, generator=torch.Generator().manual_seed(1))
    loss, accuracy = train_epoch(model, optimizer, scheduler, make_loss("ce_membrane"), config, x, y, order,
                                 torch.Generator().manual_seed(2), "cpu", range(0, 15, 7))
    if current_world().is_main:
        torch.save({"state": model.state_dict(), "loss": loss, "accuracy": accuracy}, out_file)


def test_sgd_steps_of_two_processes_are_the_steps_of_one(tmp_path):
    from scnn.train.distributed import launch_local

    _sgd_epoch(str(tmp_path / "one.pt"))
    launch_local(2, _sgd_epoch, str(tmp_path / "two.pt"))
    one, two = (torch.load(tmp_path / name, weights_only=True) for name in ("one.pt", "two.pt"))
    for name, weights in one["state"].items():
        assert torch.allclose(weights, two["state"][name], rtol=1e-5, atol=1e-6), name
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-5) and two["accuracy"] == one["accuracy"]


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    root = tmp_path_factory.mktemp("shd")
    # 40 training samples: 36 train after the 10 % validation, in global batches of 7 (five of 7 and one
    # of 1: split 4/3 between two processes, and 1/0, where one process has no sample at all).
    write_heidelberg_files(root, "shd", {"train": 40, "test": 8}, num_classes=4, spikes=120)
    return root


def _train(events, out, *extra):
    return main(["train", "--model", "4C3-P4-16FC-4FC", "--num-steps", "2", "--data-dir", str(events),
                 "data.dataset=shd", "data.feature_preset=events", f"data.cache_dir={out.parent / 'cache'}",
                 "--batch-size", "7", "--schedule", "constant", "--lr", "0.01", "--threads", "1", "--seed", "3",
                 "--out", str(out), "--no-progress", *extra])


@pytest.mark.slow  # five trainings (three by two processes), about 35 s on the shared 2-core machine
def test_two_processes_reach_the_weights_of_one_and_resume(events, tmp_path):
    single = _train(events, tmp_path / "single", "--epochs", "2")
    # Data-parallel, interrupted after one epoch (a run planned for 1, extended: the constant schedule
    # continues unchanged), then resumed by two new processes to the second epoch.
    first = _train(events, tmp_path / "ddp", "--epochs", "1", "--ddp", "2")
    assert first["epochs_run"] == 1 and first["split_sizes"]["train"] == 36
    assert first["world_size"] == 2 and single["world_size"] == 1
    resumed = _train(events, tmp_path / "ddp", "--epochs", "2", "--ddp", "2", "--resume", "--extend-epochs")
    assert resumed["epochs_run"] == 2

    one, two = (load_checkpoint(tmp_path / name / "last.pt") for name in ("single", "ddp"))
    assert one["model_state"].keys() == two["model_state"].keys()
    for name, weights in one["model_state"].items():
        # Equal up to float32 rounding: two partial gradients summed instead of one batch's.
        assert torch.allclose(weights, two["model_state"][name], rtol=1e-4, atol=1e-5), name
    # The runs really trained: the loss moved between the epochs.
    assert one["history"][0]["train_loss"] != one["history"][1]["train_loss"]
    for row_one, row_two in zip(one["history"], two["history"]):
        # The training loss and accuracy are over all 36 samples, summed across the processes.
        assert row_two["train_loss"] == pytest.approx(row_one["train_loss"], rel=1e-4)
        assert row_two["train_accuracy"] == row_one["train_accuracy"]
        assert row_two["val_accuracy"] == row_one["val_accuracy"]
    assert single["test_accuracy"] == resumed["test_accuracy"]
    # Rank 0 alone wrote: one history row per epoch, one results file, no stray temporaries.
    lines = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert not list((tmp_path / "ddp").glob("*.tmp")) and not list((tmp_path / "ddp").glob(".*.tmp"))


@pytest.mark.slow  # two processes started for a refusal, 8-20 s on the shared machine
def test_ddp_refuses_an_occupied_folder_in_every_process(events, tmp_path):
    _train(events, tmp_path / "run", "--epochs", "1")
    before = (tmp_path / "run" / "last.pt").read_bytes()
    with pytest.raises(RuntimeError, match=r"RunFolderError: .*run already holds a run .*pass --resume"):
        _train(events, tmp_path / "run", "--epochs", "1", "--ddp", "2")  # rank 0 refuses, rank 1 stops too
    assert (tmp_path / "run" / "last.pt").read_bytes() == before  # nothing overwritten
