"""Results you can trust after faults and mistakes (issue 21): every fault found by injection, kept as a test.

Kills at random points, concurrent processes, changed arguments on resume, reused and read-only
output folders, file permissions. Sweeps are in test_sweeps.py. Tiny synthetic data (see
tests.test_training.synthetic_data) or tiny FSDD subsets, one thread.
"""

import json
import os
import random
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from scnn import faults
from scnn.io import load_checkpoint, write_json
from scnn.train import DataConfig, train
from scnn.train.loop import extend_schedule, training_parts
from scnn.train.run import RunFolderError, SettingsMismatch, folder_lock
from tests.test_training import quick_config, synthetic_data

REPO = Path(__file__).resolve().parents[1]

# A training child process: synthetic data, one thread; argv: OUT, resume|fresh, epochs[, GO]: with GO, it
# imports everything, then waits for the file GO to exist before it starts (to start two trainings at once).
CHILD = """
import sys, time
from pathlib import Path
from tests.test_training import quick_config, synthetic_data
from scnn.train import DataConfig, train
while len(sys.argv) > 4 and not Path(sys.argv[4]).exists():
    time.sleep(0.01)
train(quick_config(epochs=int(sys.argv[3]), threads=1), DataConfig(), sys.argv[1], resume=sys.argv[2] == "resume",
      progress=False, data=synthetic_data())
"""


def child(out: Path, mode: str = "fresh", epochs: int = 4, go: Path | None = None) -> list[str]:
    return [sys.executable, "-c", CHILD, str(out), mode, str(epochs), *([str(go)] if go else [])]


def child_env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


def weights(out: Path) -> dict:
    return load_checkpoint(out / "last.pt")["model_state"]


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = weights(a), weights(b)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def interrupted_run(out: Path, epochs: int = 3, after: int = 1, **overrides):
    """A run planned for ``epochs`` epochs, stopped after ``after`` (as a kill between epochs would)."""
    config = quick_config(epochs=epochs, **overrides)
    assert train(config, DataConfig(), out, progress=False, data=synthetic_data(),
                 stop_after_epochs=after) == {"interrupted_after_epoch": after}
    return config


# --------------------------------------------------------------------------- kills at random points


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_reproduces_the_uninterrupted_run(tmp_path):
    """SIGKILL a training process at random moments (mid-epoch, mid-write), resume each time: the final
    weights, results and history equal those of a run never interrupted; no temporary file is left."""
    env = child_env()
    subprocess.run(child(tmp_path / "full"), check=True, env=env, capture_output=True)
    cut = tmp_path / "cut"
    rng = random.Random(21)
    kills = 0
    for attempt in range(3):
        process = faults.start(child(cut, "resume"), env=env)
        before = (cut / "last.pt").stat().st_mtime_ns if (cut / "last.pt").exists() else None
        # wait for the next checkpoint write (so the kill falls inside training), then a random moment more
        faults.wait_for(lambda: process.poll() is not None or (cut / "last.pt").exists()
                        and (cut / "last.pt").stat().st_mtime_ns != before, timeout_s=60)
        faults.wait_for(lambda: process.poll() is not None, timeout_s=rng.uniform(0.0, 0.4))
        if process.poll() is None:
            faults.kill(process)
            kills += 1
        else:
            assert process.wait() == 0, process.communicate()[0]
            break
    assert kills >= 2, "the kills should fall inside training"
    subprocess.run(child(cut, "resume"), check=True, env=env, capture_output=True)
    assert_same_weights(tmp_path / "full", cut)
    full, resumed = (json.loads((p / "results.json").read_text()) for p in (tmp_path / "full", cut))
    assert resumed["test_accuracy"] == full["test_accuracy"] and resumed["epochs_run"] == full["epochs_run"] == 4
    assert [json.loads(row)["epoch"] for row in (cut / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    assert load_checkpoint(cut / "best.pt")["epoch"] == full["best_epoch"] - 1
    assert not list(cut.glob(".*.tmp")), "temporary files of killed writes are cleaned up"


# --------------------------------------------------------------------------- resume with other arguments


CHANGES = {
    "lr": ({"lr": 0.5}, {}, "train_config.lr: 0.002 -> 0.5"),
    "seed": ({"seed": 8}, {}, "train_config.seed: 7 -> 8"),
    "beta": ({"model_overrides": {"num_steps": 3, "beta": 0.9}}, {}, "model.beta: 0.5 -> 0.9"),
    "model": ({"model": "model_a"}, {}, "train_config.model: 'model_b' -> 'model_a'"),
    "schedule": ({"schedule": "onecycle"}, {}, "train_config.schedule: 'cosine' -> 'onecycle'"),
    "more epochs": ({"epochs": 6}, {}, "train_config.epochs: 3 -> 6 (to train longer, pass --extend-epochs)"),
    "fewer epochs": ({"epochs": 2}, {}, "train_config.epochs: 3 -> 2"),
    "split": ({}, {"split": "speaker"}, "data_config.split: 'official' -> 'speaker'"),
    "features": ({}, {"feature_preset": "paper"}, "data_config.feature_preset: 'default' -> 'paper'"),
    "data folder": ({}, {"data_dir": "/elsewhere"}, "data_config.data_dir: None -> '/elsewhere'"),
}


@pytest.mark.parametrize("name", CHANGES)
def test_resume_with_other_settings_is_refused_naming_the_field(tmp_path, name):
    """Each changed argument is refused before any data are prepared, naming the field old -> new;
    the checkpoint is left as it was."""
    config = interrupted_run(tmp_path)
    before = (tmp_path / "last.pt").read_bytes()
    train_changes, data_changes, expected = CHANGES[name]
    with pytest.raises(SettingsMismatch) as refused:
        train(replace(config, **train_changes), DataConfig(**data_changes), tmp_path, resume=True, progress=False,
              data=synthetic_data())
    message = str(refused.value)
    assert expected in message and str(tmp_path / "last.pt") in message and "\n" not in message
    assert (tmp_path / "last.pt").read_bytes() == before


def test_every_differing_field_is_named_at_once(tmp_path):
    config = interrupted_run(tmp_path)
    with pytest.raises(SettingsMismatch) as refused:
        train(replace(config, lr=0.5, seed=8), DataConfig(split="speaker"), tmp_path, resume=True, progress=False,
              data=synthetic_data())
    assert all(field in str(refused.value) for field in ("train_config.lr", "train_config.seed", "data_config.split"))


def test_resume_may_change_threads_and_device_and_restate_defaults(tmp_path):
    config = interrupted_run(tmp_path)
    same = replace(config, threads=1, device="cpu", model_overrides={"num_steps": 3, "beta": 0.5})  # 0.5: default
    results = train(same, DataConfig(cache_dir=str(tmp_path / "elsewhere")), tmp_path, resume=True, progress=False,
                    data=synthetic_data())
    assert results["epochs_run"] == 3


def test_resume_whose_test_recordings_changed_is_refused(tmp_path):
    """Same settings, but a test recording's content changed (size and mtime kept) since the run began."""
    from tests.test_bad_input import data_config, make_fsdd

    folder = make_fsdd(tmp_path / "fsdd")
    config = quick_config(model="control_cnn", model_overrides={}, epochs=2, threads=1)
    data = data_config(folder, tmp_path / "cache")
    assert train(config, data, tmp_path / "run", progress=False, stop_after_epochs=1) == {"interrupted_after_epoch": 1}
    faults.noise_like(folder / "3_ann_2.wav")
    with pytest.raises(SettingsMismatch, match="test set: 1 test recordings differ in content .*3_ann_2.wav"):
        train(config, data, tmp_path / "run", resume=True, progress=False)


def test_resume_whose_features_differ_is_refused(tmp_path):
    """Features known only once prepared (here: other input rows) are compared with the checkpoint's model."""
    config = interrupted_run(tmp_path)
    data = synthetic_data()
    data.train, data.val, data.test = [(x[:, :, :16], y) for x, y in (data.train, data.val, data.test)]
    with pytest.raises(SettingsMismatch, match=r"model.input_shape: \[1, 32, 32\] -> \[1, 16, 32\]"):
        train(config, DataConfig(), tmp_path, resume=True, progress=False, data=data)


def test_resume_of_an_older_checkpoint_takes_missing_feature_fields_at_their_defaults(tmp_path):
    """A checkpoint written before ``FeatureConfig.dynamic_range_db`` existed resumes (the field is taken at
    today's default, 80 dB); one written with another value is refused naming the field."""
    from scnn.io import save_checkpoint

    config = interrupted_run(tmp_path)
    checkpoint = load_checkpoint(tmp_path / "last.pt")
    older = {**checkpoint, "feature_config": {key: value for key, value in checkpoint["feature_config"].items()
                                              if key != "dynamic_range_db"}}
    save_checkpoint(tmp_path / "last.pt", {**checkpoint, "feature_config": {**checkpoint["feature_config"],
                                                                             "dynamic_range_db": 40.0}})
    with pytest.raises(SettingsMismatch, match=r"feature_config.dynamic_range_db: 40.0 -> 80.0"):
        train(config, DataConfig(), tmp_path, resume=True, progress=False, data=synthetic_data())
    save_checkpoint(tmp_path / "last.pt", older)
    assert train(config, DataConfig(), tmp_path, resume=True, progress=False, data=synthetic_data())["epochs_run"] == 3


def test_resume_without_checkpoint_always_says_so(tmp_path, capsys):
    train(quick_config(epochs=1), DataConfig(), tmp_path, resume=True, progress=False, data=synthetic_data())
    assert f"no checkpoint at {tmp_path / 'last.pt'}, starting from scratch" in capsys.readouterr().err


# --------------------------------------------------------------------------- a larger epoch budget


def lrs(out: Path) -> list[float]:
    return [json.loads(row)["lr"] for row in (out / "metrics.jsonl").read_text().splitlines()]


def test_extend_epochs_continues_the_cosine_schedule_without_a_restart(tmp_path, capsys):
    config = interrupted_run(tmp_path, epochs=3, after=1)
    results = train(replace(config, epochs=6), DataConfig(), tmp_path, resume=True, extend_epochs=True,
                    progress=False, data=synthetic_data())
    assert "planned for 3 epochs now runs 6; after epoch 1" in capsys.readouterr().err
    rates = lrs(tmp_path)
    assert len(rates) == 6 and all(a > b for a, b in zip(rates, rates[1:])), rates  # never climbs back
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)
    assert results["schedule_extensions"] == [{"after_epoch": 1, "from_epochs": 3, "to_epochs": 6,
                                               "schedule": "cosine", "lr": pytest.approx(rates[0])}]
    assert results["config"]["train_config"]["epochs"] == 6


def test_extended_run_resumes_like_an_uninterrupted_extended_run(tmp_path):
    """The stretched schedule is part of the checkpoint: cut the extended run again and resume it."""
    for name in ("once", "twice"):
        config = interrupted_run(tmp_path / name, epochs=2, after=1)
    longer = replace(config, epochs=4)
    train(longer, DataConfig(), tmp_path / "once", resume=True, extend_epochs=True, progress=False,
          data=synthetic_data())
    assert train(longer, DataConfig(), tmp_path / "twice", resume=True, extend_epochs=True, progress=False,
                 data=synthetic_data(), stop_after_epochs=1) == {"interrupted_after_epoch": 2}
    results = train(longer, DataConfig(), tmp_path / "twice", resume=True, progress=False, data=synthetic_data())
    assert_same_weights(tmp_path / "once", tmp_path / "twice")
    assert lrs(tmp_path / "once") == lrs(tmp_path / "twice") and len(results["schedule_extensions"]) == 1


@pytest.mark.parametrize("after, phase", [(1, "annealing"), (1, "warming up")])
def test_extend_epochs_with_onecycle_never_fails_or_climbs_back(tmp_path, after, phase):
    # 48 samples in batches of 8: 6 steps per epoch; OneCycle warms up for the first 30 % of its steps
    epochs = 3 if phase == "annealing" else 8
    config = interrupted_run(tmp_path, epochs=epochs, after=after, schedule="onecycle")
    train(replace(config, epochs=epochs + 3), DataConfig(), tmp_path, resume=True, extend_epochs=True,
          progress=False, data=synthetic_data())
    rates = lrs(tmp_path)
    assert len(rates) == epochs + 3
    peak = rates.index(max(rates))
    assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1:])), rates
    assert rates[-1] < 0.01 * config.lr and max(rates) <= config.lr + 1e-12  # (the last row: one step past the end)


def test_extend_schedule_step_by_step():
    """Step by step: after the extension the cosine falls monotonically to 0 at the new end;
    OneCycle steps through the whole new total without raising."""
    model = torch.nn.Linear(2, 2)
    for schedule in ("cosine", "onecycle"):
        optimizer, scheduler, *_ = training_parts(quick_config(schedule=schedule, epochs=2, batch_size=1), model, 10)
        used = []  # the rate of each training step after the extension
        for _ in range(15):  # 15 of the planned 20 steps
            optimizer.step()
            scheduler.step()
        extend_schedule(scheduler, 40)
        for _ in range(25):
            used.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        assert all(a > b for a, b in zip(used, used[1:])), (schedule, used)
        assert used[-1] < 0.01 * used[0], (schedule, used)


def test_extending_a_finished_cosine_run_is_refused(tmp_path):
    config = quick_config(epochs=2)
    train(config, DataConfig(), tmp_path, progress=False, data=synthetic_data())
    with pytest.raises(SettingsMismatch, match="schedule ended with epoch 2"):
        train(replace(config, epochs=4), DataConfig(), tmp_path, resume=True, extend_epochs=True, progress=False,
              data=synthetic_data())
    assert json.loads((tmp_path / "results.json").read_text())["epochs_run"] == 2


def test_resumed_early_stopped_run_stays_stopped(tmp_path):
    config = quick_config(epochs=6, patience=1, lr=0.0)
    first = train(config, DataConfig(), tmp_path, progress=False, data=synthetic_data())
    again = train(config, DataConfig(), tmp_path, resume=True, progress=False, data=synthetic_data())
    assert first["epochs_run"] == again["epochs_run"] == 2


# --------------------------------------------------------------------------- run folders


def test_reused_folder_without_resume_or_overwrite_is_refused(tmp_path):
    config = quick_config(epochs=1)
    train(config, DataConfig(), tmp_path, progress=False, data=synthetic_data())
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(RunFolderError, match="already holds a run .*--resume.*--overwrite"):
        train(config, DataConfig(), tmp_path, progress=False, data=synthetic_data())
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    with pytest.raises(RunFolderError, match="exclude each other"):
        train(config, DataConfig(), tmp_path, resume=True, overwrite=True, progress=False, data=synthetic_data())


def test_overwrite_removes_the_old_run_before_the_first_epoch_writes(tmp_path):
    """The old run finished 3 epochs; the new one is cut after 1: nothing of the old run is left to contradict it."""
    train(quick_config(epochs=3), DataConfig(), tmp_path, progress=False, data=synthetic_data())
    (tmp_path / "notes.txt").write_text("the user's own file")
    assert train(quick_config(epochs=2, lr=1e-3), DataConfig(), tmp_path, overwrite=True, progress=False,
                 data=synthetic_data(), stop_after_epochs=1) == {"interrupted_after_epoch": 1}
    for name in ("results.json", "training_curves.png", "confusion_matrix.png"):
        assert not (tmp_path / name).exists(), name
    assert load_checkpoint(tmp_path / "best.pt")["train_config"]["lr"] == 1e-3
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1
    assert (tmp_path / "notes.txt").read_text() == "the user's own file"


def test_overwrite_that_fails_before_training_keeps_the_old_run(tmp_path):
    train(quick_config(epochs=1), DataConfig(), tmp_path, progress=False, data=synthetic_data())
    with pytest.raises(FileNotFoundError):
        train(quick_config(epochs=1), DataConfig(data_dir=str(tmp_path / "nowhere"), download=False), tmp_path,
              overwrite=True, progress=False)
    assert (tmp_path / "results.json").exists() and (tmp_path / "best.pt").exists()


def test_a_folder_in_use_is_refused_naming_the_holder(tmp_path):
    with folder_lock(tmp_path):
        with pytest.raises(RunFolderError, match=rf"{tmp_path} is in use by another process \(PID {os.getpid()}"):
            train(quick_config(epochs=1), DataConfig(), tmp_path, progress=False, data=synthetic_data())
    train(quick_config(epochs=1), DataConfig(), tmp_path, progress=False, data=synthetic_data())  # released


def test_second_training_process_on_the_same_folder_is_refused(tmp_path):
    """Two processes, one --out: the second exits with a clear error naming the folder and the first's PID;
    the first finishes undisturbed."""
    env = child_env()
    out, go = tmp_path / "run", tmp_path / "go"
    second = faults.start(child(out, epochs=12, go=go), env=env)  # imported and waiting while the first starts
    first = faults.start(child(out, epochs=12), env=env)
    lock = out / ".lock"
    assert faults.wait_for(lambda: lock.exists() and lock.read_text().strip() == str(first.pid), 60)
    go.touch()
    refused, _ = second.communicate(timeout=120)
    assert second.returncode != 0
    assert f"{out} is in use by another process (PID {first.pid}" in refused, refused
    output, _ = first.communicate(timeout=120)
    assert first.returncode == 0, output
    assert json.loads((out / "results.json").read_text())["epochs_run"] == 12


def test_out_under_a_file_is_refused_before_any_work(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    nowhere = DataConfig(data_dir=str(tmp_path / "no-data"), download=False)  # preparing data would fail otherwise
    with pytest.raises(RunFolderError, match=f"lies under {blocker}, which is a file"):
        train(quick_config(epochs=1), nowhere, blocker / "run", progress=False)
    with pytest.raises(RunFolderError, match="is a file, not a folder"):
        train(quick_config(epochs=1), nowhere, blocker, progress=False)


def test_read_only_out_is_refused_before_any_work(tmp_path):
    """train.py with a read-only --out stops at once with the folder named, before looking for data
    (the data folder given does not exist: reaching it would be a different error)."""
    parent = tmp_path / "read-only"
    parent.mkdir()
    (parent / "run").mkdir()
    for out, expected in ((parent / "new", "cannot be created"), (parent / "run", "is not writable")):
        parent.chmod(0o555)
        out.chmod(0o555) if out.exists() else None
        try:
            result = subprocess.run([sys.executable, str(REPO / "experiments" / "train.py"), "--out", str(out),
                                     "--data-dir", str(tmp_path / "no-data"), "--no-progress", "--threads", "1"],
                                    capture_output=True, text=True, env=child_env(),
                                    preexec_fn=faults.without_permission_override(), timeout=120)
        finally:
            parent.chmod(0o755)
        assert result.returncode != 0
        assert f"--out {out} {expected}" in result.stderr, result.stderr
        assert "no-data" not in result.stderr and "Traceback" not in result.stderr


# --------------------------------------------------------------------------- permissions


def test_outputs_get_the_users_umask_permissions(tmp_path):
    """Atomic writes go through a 0o600 temporary file; the result must have 0o666 less the umask."""
    from scnn import io as scnn_io

    umask = os.umask(0o022)
    os.umask(umask)
    assert scnn_io.FILE_MODE == 0o666 & ~umask
    write_json(tmp_path / "a.json", {"x": 1})
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o666 & ~umask
    train(quick_config(epochs=1), DataConfig(), tmp_path / "run", progress=False, data=synthetic_data())
    for path in (tmp_path / "run").iterdir():
        if path.name != ".lock":
            assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name


@pytest.mark.parametrize("umask", [0o002, 0o027])
def test_atomic_writes_follow_another_umask(tmp_path, umask):
    """The umask is read once, at import: a process started with another umask writes with it."""
    code = ("import os, stat, sys; from scnn.io import write_text; p = write_text(sys.argv[1], 'x'); "
            "print(oct(stat.S_IMODE(os.stat(p).st_mode)))")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "f.txt")], capture_output=True, text=True,
                            env=child_env(), preexec_fn=lambda: os.umask(umask), check=True)
    assert result.stdout.strip() == oct(0o666 & ~umask)


# --------------------------------------------------------------------------- Ray Tune search folders


def test_search_folder_records_its_search_and_refuses_another(tmp_path, capsys):
    from scnn.search.tune import claim_search_folder, search_record
    from scnn.train import TrainConfig

    settings = {"model": "model_b", "space": "neuron", "search": "optuna", "num_samples": 8, "epochs": 2, "seed": 0}
    record = search_record(settings, TrainConfig(epochs=2, threads=1), DataConfig())
    claim_search_folder(tmp_path, record)
    assert json.loads((tmp_path / "search.json").read_text())["settings"] == settings
    (tmp_path / "ray").mkdir()
    with pytest.raises(RunFolderError, match="already holds a search .*--resume.*--overwrite"):
        claim_search_folder(tmp_path, record)
    claim_search_folder(tmp_path, search_record(settings, TrainConfig(epochs=2, threads=4), DataConfig()),
                        resume=True)  # threads (CPUs per trial) change no result
    other = search_record({**settings, "search": "random", "num_samples": 16}, TrainConfig(epochs=2),
                          DataConfig(split="speaker"))
    with pytest.raises(SettingsMismatch) as refused:
        claim_search_folder(tmp_path, other, resume=True)
    for field in ("search: 'optuna' -> 'random'", "num_samples: 8 -> 16", "data_config.split: 'official' -> 'speaker'"):
        assert field in str(refused.value)
    (tmp_path / "retrained").mkdir()
    (tmp_path / "notes.txt").write_text("kept")
    claim_search_folder(tmp_path, other, overwrite=True)
    assert not (tmp_path / "ray").exists() and not (tmp_path / "retrained").exists()
    assert json.loads((tmp_path / "search.json").read_text())["settings"]["search"] == "random"
    assert (tmp_path / "notes.txt").read_text() == "kept" and "--overwrite: removed" in capsys.readouterr().err
