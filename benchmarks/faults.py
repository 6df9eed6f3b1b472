"""The fault table of issue 21, injected on a small, fast setup: one line per fault.

Every row does what the issue's fault injection did (through experiments/train.py,
experiments/evaluate.py, experiments/sweep_param.py and the library) and prints

    handled   the fault is met correctly (the result is true, or the change is stated)
    refused   stopped with one clear line, nothing written that contradicts the folder
    FAILED    what went wrong (a wrong result, a traceback, silence)

The exit status is 1 if any row FAILED. The rows are also saved as the "faults" table
(scnn.result_tables, docs/results_formats.md): OUT/faults.csv and its sidecar OUT/faults.json. The setup is small: a copy of FSDD with three
speakers (george, jackson, theo) and takes 0-7 (240 recordings; the official test split
holds 150), Model B at T = 2, 3 training recordings per class, 1-3 epochs, one thread.
Scripts run in this process by default (importing torch once, not thirty times); rows that
need a process of their own (kills, two trainings at once, a read-only folder) start one.
Example:
    python benchmarks/faults.py --data-dir ../shared/data/fsdd/recordings
    python benchmarks/faults.py --only resume sweep        # rows whose name holds a word
    python benchmarks/faults.py --subprocess                # every script in its own process
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import runpy
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout: the scnn beside this script

from scnn import faults  # noqa: E402

SPEAKERS = ("george", "jackson", "theo")
TAKES = range(8)  # takes 0-4 are FSDD's official test split, 5-7 train

HANDLED, REFUSED, FAILED = "handled", "refused", "FAILED"


@dataclass
class Result:
    returncode: int
    output: str  # stdout and stderr together
    seconds: float

    def error_line(self) -> str:
        """The line that says what went wrong ("error: ..." or "scnn train: error: ..."), else the last line."""
        lines = [line.strip() for line in self.output.splitlines() if line.strip()]
        for line in lines:
            if line.startswith("error:") or line.startswith("scnn ") and ": error: " in line:
                return line
        return lines[-1] if lines else "(no output)"


def shorten(text: str, limit: int = 150) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def refusal(result: Result, *needles: str) -> tuple[str, str]:
    """``refused`` when the script stopped (exit status not 0) with a clear line naming each of ``needles``."""
    if result.returncode == 0:
        return FAILED, f"exit 0, not refused: {shorten(result.error_line())}"
    if "Traceback" in result.output:
        return FAILED, f"traceback: {shorten(result.error_line())}"
    line = result.error_line()
    missing = [needle for needle in needles if needle not in result.output]
    if missing:
        return FAILED, f"the error does not name {', '.join(missing)}: {shorten(line)}"
    return REFUSED, shorten(line)


class Bench:
    """The shared setup: the data copy, a feature cache, a finished run and an interrupted one."""

    def __init__(self, work: Path, source: Path, own_process: bool):
        self.work, self.own_process = work, own_process
        self.data = self.copy_data("data", source)
        self.cache = work / "cache"
        self._finished = self._interrupted = None
        self._help = {}

    def copy_data(self, name: str, source: Path | None = None) -> Path:
        """A copy of the subset (from ``source``, else from the bench's own copy), modification times kept."""
        target = self.work / name
        target.mkdir(parents=True)
        if source is None:
            for path in self.data.glob("*.wav"):
                shutil.copy2(path, target / path.name)
            return target
        for path in sorted(source.glob("*.wav")):
            digit, speaker, take = path.stem.split("_")
            if speaker in SPEAKERS and int(take) in TAKES:
                shutil.copy2(path, target / path.name)
        if not any(target.glob("*.wav")):
            raise SystemExit(f"error: no FSDD recordings of {', '.join(SPEAKERS)} in {source}")
        return target

    # ----------------------------------------------------------------------- running scripts

    def script(self, name: str, args: list[str], own_process: bool = False, env: dict | None = None,
               preexec_fn=None) -> Result:
        """Run ``experiments/<name>`` with ``args``: here (as ``__main__``, output captured) or in a process."""
        path = REPO / "experiments" / name
        start = time.perf_counter()
        if own_process or self.own_process or preexec_fn is not None:
            done = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True,
                                  env=env or child_env(), preexec_fn=preexec_fn)
            return Result(done.returncode, done.stdout + done.stderr, time.perf_counter() - start)
        buffer, code = io.StringIO(), 0
        argv = sys.argv
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            try:
                sys.argv = [str(path), *args]
                runpy.run_path(str(path), run_name="__main__")
            except SystemExit as stop:
                if isinstance(stop.code, str):  # sys.exit("error: ...") prints the text, exit status 1
                    print(stop.code, file=sys.stderr)
                    code = 1
                else:
                    code = stop.code or 0
            except BaseException:  # a traceback, as a process would print it
                traceback.print_exc()
                code = 1
            finally:
                sys.argv = argv
        return Result(code, buffer.getvalue(), time.perf_counter() - start)

    def has_flag(self, script: str, flag: str) -> bool:
        if script not in self._help:
            self._help[script] = self.script(script, ["--help"]).output
        return flag in self._help[script]

    def data_args(self, data: Path | None = None) -> list[str]:
        return ["--data-dir", str(data or self.data), "--cache-dir", str(self.cache), "--no-download",
                "--train-per-class", "3"]

    def train_args(self, out: Path, epochs: int = 2, data: Path | None = None) -> list[str]:
        return ["--model", "model_b", "--num-steps", "2", "--epochs", str(epochs), "--batch-size", "16",
                "--threads", "1", "--no-progress", "--out", str(out), *self.data_args(data)]

    # ----------------------------------------------------------------------- shared runs

    def finished(self) -> Path:
        """A finished run: 2 epochs (results.json, best.pt, last.pt)."""
        if self._finished is None:
            out = self.work / "finished"
            result = self.script("train.py", self.train_args(out, epochs=2))
            if result.returncode != 0 or not (out / "results.json").exists():
                raise RuntimeError(f"the reference run failed: {result.error_line()}")
            self._finished = out
        return self._finished

    def interrupted(self) -> Path:
        """A run planned for 3 epochs, killed (SIGKILL) once epoch 1's checkpoint is written."""
        if self._interrupted is None:
            self.finished()  # features cached first, so the kill falls in training
            out = self.work / "interrupted"
            process = faults.start([sys.executable, str(REPO / "experiments" / "train.py"),
                                    *self.train_args(out, epochs=3)], env=child_env())
            faults.wait_for(lambda: (out / "last.pt").exists() or process.poll() is not None, 300, 0.01)
            faults.kill(process)
            if (out / "results.json").exists() or not (out / "last.pt").exists():
                raise RuntimeError("the run to interrupt was not cut inside training")
            self._interrupted = out
        return self._interrupted

    def copy_of(self, run: Path, name: str) -> Path:
        target = self.work / name
        shutil.copytree(run, target)
        (target / ".lock").unlink(missing_ok=True)
        return target


def child_env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "OMP_NUM_THREADS": "1"}


def history_rates(out: Path) -> list[float]:
    return [json.loads(line)["lr"] for line in (out / "metrics.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- the rows

ROWS: list[tuple[str, object]] = []


def row(name: str):
    def register(function):
        ROWS.append((name, function))
        return function

    return register


def _test_features(checkpoint: dict, data_dir: Path, cache: Path):
    from scnn.data.prepare import checkpoint_data

    return checkpoint_data(checkpoint, {"data_dir": str(data_dir), "cache_dir": str(cache)}).test


@row("test recordings replaced by noise (same size and mtime), then evaluate.py")
def noise_in_test_set(bench: Bench) -> tuple[str, str]:
    import torch

    from scnn.train import evaluate, load_trained_model

    run, data = bench.finished(), bench.copy_data("data_noise")
    evaluate_args = ["--checkpoint", str(run / "best.pt"), "--data-dir", str(data), "--no-progress"]
    clean = bench.script("evaluate.py", [*evaluate_args, "--out", str(bench.work / "eval_clean")])
    if clean.returncode != 0:
        return FAILED, f"evaluating the clean copy failed: {shorten(clean.error_line())}"
    for index, path in enumerate(sorted(data.glob("*.wav"))):
        if int(path.stem.split("_")[2]) < 5:
            faults.noise_like(path, seed=index)
    noisy = bench.script("evaluate.py", [*evaluate_args, "--out", str(bench.work / "eval_noise")])
    model, checkpoint = load_trained_model(run / "best.pt")
    fresh_x, fresh_y = _test_features(checkpoint, data, bench.work / "fresh_cache")
    true = evaluate(model, fresh_x, fresh_y, num_classes=len(checkpoint["class_names"]))["accuracy"]
    if noisy.returncode != 0:
        return refusal(noisy, str(data))
    reported = json.loads((bench.work / "eval_noise" / "results.json").read_text())["test_accuracy"]
    before = json.loads((bench.work / "eval_clean" / "results.json").read_text())["test_accuracy"]
    cached_x, _ = _test_features(checkpoint, data, bench.cache)
    if not torch.equal(cached_x, fresh_x) or abs(reported - true) > 1e-9:
        return FAILED, (f"stale feature cache: reported {100 * reported:.1f} % (clean data {100 * before:.1f} %), "
                        f"true {100 * true:.1f} %")
    return HANDLED, f"reported {100 * reported:.1f} % = fresh-cache figure (clean data {100 * before:.1f} %)"


def _cache_damage(bench: Bench, name: str, damage) -> tuple[str, str]:
    import warnings

    import torch

    from scnn.data.prepare import DataConfig, prepare_data

    bench.finished()  # its features are in the bench's cache: a copy of it is damaged here
    cache = bench.work / f"cache_{name}"
    shutil.copytree(bench.cache, cache)
    config = DataConfig(data_dir=str(bench.data), cache_dir=str(cache), train_per_class=3, download=False)
    pristine = prepare_data(replace(config, cache_dir=str(bench.cache)), progress=False)
    files = sorted(p for p in cache.rglob("*") if p.is_file())
    if not files:
        return FAILED, f"no cache file written in {cache}"
    for path in files:
        damage(path)
    said = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(said):
        warnings.simplefilter("always")
        try:
            again = prepare_data(config, progress=False)
        except Exception as error:  # noqa: BLE001 - the row reports whatever escapes
            names = any(str(p) in str(error) or p.name in str(error) for p in files)
            return FAILED, (f"{type(error).__name__}{' naming the file' if names else ' (file not named)'}: "
                            f"{shorten(str(error), 100)}")
    messages = [str(w.message) for w in caught] + said.getvalue().splitlines()
    named = [m for m in messages if any(p.name in m for p in files)]
    if not all(torch.equal(a[0], b[0]) for a, b in zip((pristine.train, pristine.test), (again.train, again.test))):
        return FAILED, "the damaged cache was used: features differ from the extracted ones"
    if not named:
        return FAILED, "rebuilt, but no warning names the damaged file"
    leftovers = [p.name for p in cache.rglob("*.tmp*")]
    if leftovers:
        return FAILED, f"rebuilt, but temporary files remain: {', '.join(leftovers)}"
    return HANDLED, f"rebuilt with a warning: {shorten(named[0], 110)}"


@row("a feature-cache file truncated")
def cache_truncated(bench: Bench):
    return _cache_damage(bench, "truncated", lambda path: faults.truncate(path, 0.5))


@row("a feature-cache file emptied")
def cache_emptied(bench: Bench):
    return _cache_damage(bench, "emptied", lambda path: faults.truncate(path, 0))


@row("a feature-cache file with flipped bytes")
def cache_flipped(bench: Bench):
    return _cache_damage(bench, "flipped", lambda path: faults.flip_bytes(path, count=64, seed=1))


def _resume_with(bench: Bench, name: str, extra: list[str], *needles: str) -> tuple[str, str]:
    out = bench.copy_of(bench.interrupted(), f"resume_{name}")
    before = (out / "last.pt").read_bytes()
    result = bench.script("train.py", [*bench.train_args(out, epochs=3), "--resume", *extra])
    status, reason = refusal(result, *needles)
    if status == REFUSED and (out / "last.pt").read_bytes() != before:
        return FAILED, "refused, but last.pt was changed"
    if status == FAILED and result.returncode == 0:
        reason = f"resumed with {' '.join(extra)}: {shorten(result.error_line(), 100)}"
    return status, reason


@row("--resume with another --split (speaker)")
def resume_split(bench: Bench):
    return _resume_with(bench, "split", ["--split", "speaker"], "data_config.split")


@row("--resume with --lr 0.5")
def resume_lr(bench: Bench):
    return _resume_with(bench, "lr", ["--lr", "0.5"], "train_config.lr")


@row("--resume with --seed 7")
def resume_seed(bench: Bench):
    return _resume_with(bench, "seed", ["--seed", "7"], "train_config.seed")


@row("--resume with --beta 0.9")
def resume_beta(bench: Bench):
    return _resume_with(bench, "beta", ["--beta", "0.9"], "beta")


@row("--resume with --epochs 6 (run planned for 3)")
def resume_epochs(bench: Bench):
    return _resume_with(bench, "epochs", ["--epochs", "6"], "train_config.epochs")


@row("--resume --epochs 6 with the explicit extension (run planned for 3)")
def resume_extend(bench: Bench):
    out = bench.copy_of(bench.interrupted(), "resume_extend")
    if bench.has_flag("train.py", "--extend-epochs"):
        how = "--extend-epochs"
        result = bench.script("train.py", [*bench.train_args(out, epochs=6), "--resume", "--extend-epochs"])
        if result.returncode != 0:
            return FAILED, shorten(result.error_line())
    else:  # the flag is not wired into the script yet: the library keyword it maps to
        from scnn.data.prepare import DataConfig
        from scnn.io import load_checkpoint
        from scnn.train import TrainConfig, train

        how = "train(extend_epochs=True); --extend-epochs not in train.py yet"
        checkpoint = load_checkpoint(out / "last.pt")
        config = replace(TrainConfig(**checkpoint["train_config"]), epochs=6)
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                train(config, DataConfig.from_dict(checkpoint["data_config"]), out, resume=True,
                      extend_epochs=True, progress=False)
        except TypeError as error:
            return FAILED, f"train() has no extend_epochs: {error}"
    rates = history_rates(out)
    results = json.loads((out / "results.json").read_text())
    if len(rates) != 6:
        return FAILED, f"{len(rates)} epochs run, not 6"
    if any(later > earlier for earlier, later in zip(rates, rates[1:])):
        return FAILED, f"the learning rate climbs back: {', '.join(f'{r:.2g}' for r in rates)}"
    if not results.get("schedule_extensions"):
        return FAILED, "the extension is not recorded in results.json"
    return HANDLED, (f"lr falls {rates[0]:.2g} -> {rates[-1]:.2g} over 6 epochs, no restart; recorded in "
                     f"results.json ({how})")


@row("--resume with --features paper")
def resume_features(bench: Bench):
    return _resume_with(bench, "features", ["--features", "paper"], "data_config.feature_preset")


@row("--resume with --model model_a")
def resume_model(bench: Bench):
    return _resume_with(bench, "model", ["--model", "model_a"], "train_config.model")


@row("--resume with --schedule onecycle")
def resume_schedule(bench: Bench):
    return _resume_with(bench, "schedule", ["--schedule", "onecycle"], "train_config.schedule")


@row("--resume --no-progress with no last.pt")
def resume_nothing(bench: Bench):
    bench.finished()
    out = bench.work / "resume_nothing"
    result = bench.script("train.py", [*bench.train_args(out, epochs=1), "--resume"])
    if result.returncode != 0:
        return FAILED, shorten(result.error_line())
    line = next((line for line in result.output.splitlines() if "starting from scratch" in line), None)
    return (HANDLED, f"said: {shorten(line, 110)}") if line else (FAILED, "started from scratch without a word")


@row("a finished run folder reused without --resume")
def reused_folder(bench: Bench):
    out = bench.copy_of(bench.finished(), "reused")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"}
    result = bench.script("train.py", [*bench.train_args(out, epochs=3), "--lr", "0.001"])
    status, reason = refusal(result, str(out))
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"}
    if status == FAILED and result.returncode == 0:
        return FAILED, "the old run was overwritten without --overwrite"
    if status == REFUSED and after != before:
        return FAILED, "refused, but the folder's files changed"
    return status, reason


@row("a finished run folder replaced with --overwrite, killed after epoch 1")
def overwritten_and_killed(bench: Bench):
    out = bench.copy_of(bench.finished(), "overwritten")
    stamp = (out / "best.pt").stat().st_mtime_ns
    if bench.has_flag("train.py", "--overwrite"):
        how = "--overwrite"
        command = [sys.executable, str(REPO / "experiments" / "train.py"),
                   *bench.train_args(out, epochs=3), "--lr", "0.001", "--overwrite"]
    else:  # the flag is not wired into the script yet: the library keyword, in a process of its own
        how = "train(overwrite=True); --overwrite not in train.py yet"
        code = ("import sys; from scnn.train import DataConfig, TrainConfig, train; "
                "train(TrainConfig(model='model_b', model_overrides={'num_steps': 2}, epochs=3, batch_size=16, "
                f"lr=0.001, threads=1), DataConfig(data_dir={str(bench.data)!r}, cache_dir={str(bench.cache)!r}, "
                f"train_per_class=3, download=False), {str(out)!r}, overwrite=True, progress=False)")
        command = [sys.executable, "-c", code]
    process = faults.start(command, env=child_env())

    def new_best() -> bool:  # the old best.pt is rewritten (new mtime) once the new run's epoch 1 is saved
        try:
            return (out / "best.pt").stat().st_mtime_ns != stamp
        except FileNotFoundError:
            return False

    faults.wait_for(lambda: process.poll() is not None or new_best(), 300, 0.01)
    output = faults.kill(process)
    if process.returncode == 0 and (out / "results.json").exists():
        return FAILED, "the run finished before the kill; cannot judge the folder"
    if "Traceback" in output:
        return FAILED, f"traceback: {shorten(output.splitlines()[-1])}"
    if (out / "results.json").exists():
        return FAILED, "results.json of the old run is still there beside the new checkpoints"
    from scnn.io import load_checkpoint

    for name in ("last.pt", "best.pt"):
        if load_checkpoint(out / name)["train_config"]["lr"] != 0.001:
            return FAILED, f"{name} is not the new run's"
    return HANDLED, f"old results removed before epoch 1 wrote; the folder holds only the new, unfinished run ({how})"


@row("two trainings on the same --out at once")
def concurrent_runs(bench: Bench):
    bench.finished()
    out, go = bench.work / "concurrent", bench.work / "concurrent.go"
    script = REPO / "experiments" / "train.py"
    args = bench.train_args(out, epochs=3)
    # the second process imports everything, then waits for GO: it tries the folder while the first trains
    waiting = ("import sys, time, runpy, pathlib, torch, scnn.train\n"
               f"while not pathlib.Path({str(go)!r}).exists(): time.sleep(0.01)\n"
               f"sys.argv = [{str(script)!r}, *{args!r}]\n"
               f"runpy.run_path({str(script)!r}, run_name='__main__')\n")
    second = faults.start([sys.executable, "-c", waiting], env=child_env())
    first = faults.start([sys.executable, str(script), *args], env=child_env())
    lock = out / ".lock"
    faults.wait_for(lambda: first.poll() is not None or lock.exists() and lock.read_text().strip() == str(first.pid),
                    300, 0.01)
    go.touch()
    second_output, _ = second.communicate(timeout=600)
    first_output, _ = first.communicate(timeout=600)
    result = Result(second.returncode, second_output, 0.0)
    if first.returncode != 0:
        return FAILED, f"the first training failed: {shorten(first_output.splitlines()[-1] if first_output else '')}"
    status, reason = refusal(result, str(out), str(first.pid))
    if status == FAILED and second.returncode == 0:
        return FAILED, "both trainings ran to the end in one folder"
    if json.loads((out / "results.json").read_text())["epochs_run"] != 3:
        return FAILED, "the first run's results were damaged"
    return status, reason


def _sweep_args(bench: Bench, out: Path, param: str, values: list[str], model: str = "model_b",
                epochs: int = 1) -> list[str]:
    return ["--model", model, "--param", param, "--values", *values, "--seeds", "0", "--epochs", str(epochs),
            "--model-option", "num_steps=2", "--threads", "1", "--out", str(out), *bench.data_args()]


def _beta_sweep(bench: Bench, name: str) -> tuple[Path, Result]:
    out = bench.work / name
    return out, bench.script("sweep_param.py", _sweep_args(bench, out, "beta", ["0.5"]))


@row("a sweep rerun into its folder with --model model_a --epochs 3")
def sweep_other_model(bench: Bench):
    out, first = _beta_sweep(bench, "sweep_model")
    if first.returncode != 0:
        return FAILED, f"the first sweep failed: {shorten(first.error_line())}"
    before = (out / "sweep.csv").read_bytes()
    result = bench.script("sweep_param.py", _sweep_args(bench, out, "beta", ["0.5"], model="model_a", epochs=3))
    status, reason = refusal(result, "model_a", "epochs")
    if status == FAILED and result.returncode == 0:
        return FAILED, "nothing refused: the old Model B rows are reported as Model A"
    if (out / "sweep.csv").read_bytes() != before:
        return FAILED, "refused, but sweep.csv changed"
    return status, reason


@row("a threshold sweep into a folder holding a beta sweep")
def sweep_other_param(bench: Bench):
    out, first = _beta_sweep(bench, "sweep_param")
    if first.returncode != 0:
        return FAILED, f"the first sweep failed: {shorten(first.error_line())}"
    result = bench.script("sweep_param.py", _sweep_args(bench, out, "threshold", ["0.5"]))
    status, reason = refusal(result, "threshold")
    if status == FAILED and result.returncode == 0:
        return FAILED, "threshold rows were mixed into the beta sweep"
    return status, reason


def _string_sweep(bench: Bench) -> tuple[Path, Result]:
    out = bench.work / "sweep_surrogate"
    if not out.exists():
        result = bench.script("sweep_param.py", _sweep_args(bench, out, "surrogate", ["atan", "fast_sigmoid"]))
        return out, result
    return out, Result(0, "", 0.0)


@row("a sweep over a string parameter (--param surrogate --values atan fast_sigmoid), rerun")
def sweep_strings(bench: Bench):
    out, first = _string_sweep(bench)
    if first.returncode != 0:
        return FAILED, f"the first sweep failed: {shorten(first.error_line())}"
    before = (out / "sweep.csv").read_bytes()
    again = bench.script("sweep_param.py", _sweep_args(bench, out, "surrogate", ["atan", "fast_sigmoid"]))
    if again.returncode != 0:
        return FAILED, f"the rerun failed: {shorten(again.error_line())}"
    from scnn.search.sweep import read_sweep

    values = [row["value"] for row in read_sweep(out / "sweep.csv")]
    if (out / "sweep.csv").read_bytes() != before or values != ["atan", "fast_sigmoid"]:
        return FAILED, f"the rerun changed the sweep: values {values}"
    return HANDLED, "resumed: both points kept, none retrained, values read back as strings"


@row("the last line of sweep.csv cut short, then the sweep rerun")
def sweep_cut_line(bench: Bench):
    out, first = _string_sweep(bench)
    if first.returncode != 0:
        return FAILED, f"the first sweep failed: {shorten(first.error_line())}"
    damaged = bench.copy_of(out, "sweep_cut")
    line = faults.cut_last_line(damaged / "sweep.csv")
    result = bench.script("sweep_param.py", _sweep_args(bench, damaged, "surrogate", ["atan", "fast_sigmoid"]))
    if result.returncode != 0:
        return FAILED, shorten(result.error_line())
    named = next((text for text in result.output.splitlines() if f"line {line}" in text and "sweep.csv" in text), None)
    if named is None:
        return FAILED, "the damaged line was not reported by file and line"
    from scnn.search.sweep import read_sweep

    if len(read_sweep(damaged / "sweep.csv")) != 2:
        return FAILED, "the damaged point was not redone"
    said = named.split("DamagedSweepRow: ")[-1].split("UserWarning: ")[-1]
    return HANDLED, f"reported ({shorten(said, 100)}); the other row loaded, the damaged point redone"


def _evaluate_subset(bench: Bench, name: str, drop) -> Result:
    data = bench.copy_data(f"data_{name}")
    for path in list(data.glob("*.wav")):
        if drop(path):
            path.unlink()
    return bench.script("evaluate.py", ["--checkpoint", str(bench.finished() / "best.pt"), "--data-dir", str(data),
                                        "--out", str(bench.work / f"eval_{name}"), "--no-progress"])


@row("all test recordings removed, then evaluate.py")
def empty_test_set(bench: Bench):
    result = _evaluate_subset(bench, "no_test", lambda path: int(path.stem.split("_")[2]) < 5)
    if result.returncode == 0:
        return FAILED, f"exit 0: {shorten(result.error_line())}"
    return refusal(result)


@row("a third of the test recordings removed, then evaluate.py")
def smaller_test_set(bench: Bench):
    result = _evaluate_subset(bench, "less_test", lambda path: int(path.stem.split("_")[2]) < 5
                              and path.stem.split("_")[1] == SPEAKERS[0])
    if result.returncode != 0:
        return refusal(result)
    words = ("warning", "differ", "missing", "changed")
    said = [line for line in result.output.splitlines()
            if any(word in line.lower() for word in words) and "DeprecationWarning" not in line]
    if not said:
        return FAILED, f"evaluated without a word: {shorten(result.error_line(), 100)}"
    return HANDLED, f"warned: {shorten(said[0], 120)}"


@row("--out read-only")
def read_only_out(bench: Bench):
    parent = bench.work / "read_only"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        start = time.perf_counter()
        result = bench.script("train.py", bench.train_args(parent / "run", data=bench.work / "no-data"),
                              preexec_fn=faults.without_permission_override() or (lambda: None))
    finally:
        parent.chmod(0o755)
    status, reason = refusal(result, str(parent / "run"))
    if status == REFUSED and "no-data" in result.output:
        return FAILED, "refused only when looking for the data, not for the folder"
    return status, f"{reason} ({time.perf_counter() - start:.1f} s, before any data preparation)" \
        if status == REFUSED else reason


@row("--out under a file")
def out_under_file(bench: Bench):
    blocker = bench.work / "a_file"
    blocker.write_text("")
    result = bench.script("train.py", bench.train_args(blocker / "run", data=bench.work / "no-data"))
    status, reason = refusal(result, str(blocker))
    if status == REFUSED and "no-data" in result.output:
        return FAILED, "refused only when looking for the data, not for the folder"
    return status, reason


@row("output file permissions")
def permissions(bench: Bench):
    umask = os.umask(0o022)
    os.umask(umask)
    expected = 0o666 & ~umask
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in bench.finished().iterdir()
             if p.is_file() and p.name != ".lock"}
    wrong = {name: oct(mode) for name, mode in modes.items() if mode != expected}
    if wrong:
        return FAILED, f"not {oct(expected)} (umask {oct(umask)}): {wrong}"
    return HANDLED, f"all {len(modes)} run files {oct(expected)} (umask {oct(umask)})"


# --------------------------------------------------------------------------- main


def write_faults_table(results: list[dict], out: Path, argv: list[str]) -> Path:
    """OUT/faults.csv and its sidecar: one row per fault (fault, status, reason, seconds), through the schema."""
    from scnn.result_tables import write_table

    return write_table(results, out / "faults.csv", "faults", {"argv": argv, "speakers": list(SPEAKERS)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("SCNN_DATA_DIR"),
                        help="folder of FSDD wavs (default: $SCNN_DATA_DIR); it is copied, never changed")
    parser.add_argument("--work", help="folder for the copies and runs (default: a temporary folder, removed)")
    parser.add_argument("--only", nargs="+", metavar="WORD", help="run only rows whose name holds one of these words")
    parser.add_argument("--subprocess", action="store_true", help="run every script in a process of its own")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads here (default 1)")
    parser.add_argument("--out", default="runs/faults", help="folder of the faults table (default runs/faults)")
    args = parser.parse_args(argv)
    if not args.data_dir or not Path(args.data_dir).is_dir():
        parser.error("--data-dir DIR (a folder of FSDD wavs) is required, or set SCNN_DATA_DIR")
    out = Path(args.out).resolve()  # whatever a row does to the working folder
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="scnn-faults-"))
    if args.work and work.exists() and any(work.iterdir()):
        parser.error(f"--work {work} is not empty")
    rows = [(name, function) for name, function in ROWS
            if not args.only or any(word.lower() in name.lower() for word in args.only)]
    start = time.perf_counter()
    counts = {HANDLED: 0, REFUSED: 0, FAILED: 0}
    results = []
    try:
        bench = Bench(work, Path(args.data_dir), args.subprocess)
        for name, function in rows:
            row_start = time.perf_counter()
            try:
                status, reason = function(bench)
            except Exception as error:  # noqa: BLE001 - a row that breaks is a failed row, the rest still run
                status, reason = FAILED, f"{type(error).__name__}: {shorten(str(error), 120)}"
            counts[status] += 1
            seconds = time.perf_counter() - row_start
            results.append({"fault": name, "status": status, "reason": reason or "-", "seconds": seconds})
            print(f"{status:8s} {name}: {reason} [{seconds:.0f} s]", flush=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    write_faults_table(results, out, list(sys.argv[1:] if argv is None else argv))
    print(f"{len(rows)} faults: {counts[HANDLED]} handled, {counts[REFUSED]} refused, {counts[FAILED]} FAILED "
          f"in {time.perf_counter() - start:.0f} s")
    return 1 if counts[FAILED] else 0


if __name__ == "__main__":
    sys.exit(main())
