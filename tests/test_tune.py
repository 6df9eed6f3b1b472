"""Ray Tune searches end to end on a small FSDD subset: every algorithm, multi-objective, restore."""

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sweeps"))
import tune_neuron  # noqa: E402

from scnn.search.tune import pareto_front  # noqa: E402


def tiny_search(fsdd_dir, feature_cache, out, *extra):
    return tune_neuron.main(["--num-samples", "2", "--epochs", "1", "--train-per-class", "10",
                             "--data-dir", str(fsdd_dir), "--cache-dir", str(feature_cache), "--out", str(out),
                             *extra])


@pytest.mark.parametrize("algorithm", ["random", "optuna", "hyperopt", "bayesopt"])
def test_tiny_search_with_each_algorithm(fsdd_dir, feature_cache, tmp_path, algorithm):
    summary = tiny_search(fsdd_dir, feature_cache, tmp_path, "--search", algorithm)
    assert summary["trials"] == 2 and summary["finished_trials"] == 2
    trials = json.loads((tmp_path / "trials.json").read_text())
    for trial in trials:
        assert 0.0 <= trial["beta"] <= 1.0 and 0.0 < trial["threshold"] <= 5.0 and 1 <= trial["num_steps"] < 26
        assert trial["synops"] > 0 and 0 <= trial["activation_sparsity"] <= 1
    assert 0 <= summary["retrained_test_accuracy"] <= 1 and (tmp_path / "pareto.png").exists()
    assert summary["retrained_config"]["model_overrides"]["num_steps"] == int(summary["chosen_config"]["num_steps"])


def test_multi_objective_search_writes_the_pareto_front(fsdd_dir, feature_cache, tmp_path):
    summary = tiny_search(fsdd_dir, feature_cache, tmp_path, "--search", "optuna", "--multi-objective")
    front = json.loads((tmp_path / "pareto.json").read_text())
    assert summary["multi_objective"] and 1 <= len(front) <= 2
    assert (tmp_path / "pareto.md").read_text().startswith("| beta")


def test_restore_keeps_finished_trials(fsdd_dir, feature_cache, tmp_path):
    tiny_search(fsdd_dir, feature_cache, tmp_path, "--search", "random")
    first = json.loads((tmp_path / "trials.json").read_text())
    summary = tiny_search(fsdd_dir, feature_cache, tmp_path, "--search", "random", "--resume")
    again = json.loads((tmp_path / "trials.json").read_text())
    assert summary["trials"] == 2
    assert [(t["beta"], t["val_accuracy"]) for t in again] == [(t["beta"], t["val_accuracy"]) for t in first]


def test_pareto_front():
    points = [{"val_accuracy": 0.9, "synops": 10}, {"val_accuracy": 0.95, "synops": 20},
              {"val_accuracy": 0.85, "synops": 15}, {"val_accuracy": 0.99, "synops": 50}]
    assert pareto_front(points) == [points[0], points[1], points[3]]


def test_bayesopt_rejects_discrete_dimensions():
    from scnn.search.tune import neuron_search_space

    with pytest.raises(ValueError, match="continuous"):
        neuron_search_space("bayesopt", tune_batch_size=True)


def test_ssm_baseline_is_searchable_with_its_own_space(fsdd_dir, feature_cache, tmp_path):
    summary = tiny_search(fsdd_dir, feature_cache, tmp_path, "--search", "random", "--space", "ssm",
                          "--model", "ssm_tiny")
    trials = json.loads((tmp_path / "trials.json").read_text())
    assert summary["finished_trials"] == 2
    assert all({"features", "state_size", "layers", "dt_max", "lr"} <= set(trial) for trial in trials)
    overrides = summary["retrained_config"]["model_overrides"]
    assert overrides["features"] % 2 == 0 and len(overrides["downsample"]) == int(summary["chosen_config"]["layers"])


def test_search_killed_midway_resumes_without_losing_finished_trials(fsdd_dir, feature_cache, tmp_path):
    """Kill the driver (SIGKILL) once a trial has finished; --resume completes the search and keeps it."""
    import os
    import signal
    import subprocess
    import time

    script = Path(__file__).resolve().parents[1] / "sweeps" / "tune_neuron.py"
    arguments = ["--search", "random", "--num-samples", "6", "--epochs", "2", "--grace-period", "2",
                 "--train-per-class", "10", "--data-dir", str(fsdd_dir), "--cache-dir", str(feature_cache),
                 "--out", str(tmp_path)]
    driver = subprocess.Popen([sys.executable, str(script), *arguments], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    search = tmp_path / "ray" / "search"
    deadline = time.time() + 240

    def finished_trials():
        return [p.parent.name for p in search.glob("*/result.json") if len(p.read_text().splitlines()) >= 2]

    while time.time() < deadline and not finished_trials() and driver.poll() is None:
        time.sleep(1)
    time.sleep(3)  # let Tune write its experiment state
    finished_before = finished_trials()
    assert driver.poll() is None and finished_before, "the search should be killed midway, after a trial finished"
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    subprocess.run(["pkill", "-9", "-f", "ray::"], check=False)
    assert not (tmp_path / "summary.json").exists()

    summary = tune_neuron.main([*arguments, "--resume"])
    assert summary["trials"] == 6 and summary["finished_trials"] == 6
    still_there = {p.parent.name for p in search.glob("*/result.json")}
    assert set(finished_before) <= still_there


# A two-node Ray cluster on one machine, on loopback only. Ray rewrites 127.0.0.1 and localhost (in `--address`,
# `--node-ip-address` and `ray.init(address=...)`) to the machine's network address, which tests may not use; other
# 127.x addresses are kept, and Linux routes all of 127.0.0.0/8 to the loopback interface. Each node gets its own
# address, so Tune's `node_ip` tells which node ran a trial.
HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _live_processes_in_sessions(sessions: set[int]) -> list[int]:
    """PIDs of the live (not zombie) processes whose session id is one of ``sessions`` (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, _ppid, _pgrp, session = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:4]
        except (OSError, IndexError, ValueError):
            continue
        if int(session) in sessions and state != "Z":
            pids.append(int(entry.name))
    return pids


def _stop_sessions(sessions: set[int]) -> None:
    """Stop every process of the sessions this test started (`ray stop` would also stop other people's Ray)."""
    import os
    import signal
    import time

    sessions = sessions - {os.getsid(0)}
    for sig, grace in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 3.0)):
        for pid in _live_processes_in_sessions(sessions):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + grace
        while time.time() < deadline and _live_processes_in_sessions(sessions):
            time.sleep(0.2)


@pytest.fixture
def loopback_ray_cluster():
    """`ray start --head` on 127.0.0.2 and a worker node on 127.0.0.3, one CPU each; stopped afterwards.

    Every process is started in a session of its own (`start_new_session`), and Ray's daemons and workers stay in
    the session of the `ray start` that launched them, so teardown stops exactly these processes. Yields a dict:
    address, env (for drivers), sessions (add the session of any other process to stop).
    """
    import os
    import shutil
    import socket
    import subprocess
    import tempfile

    if sys.platform != "linux":
        pytest.skip("a multi-node Ray cluster on one machine needs Linux (Ray refuses multi-node on macOS and "
                    "Windows, and other systems do not route 127.0.0.2 to loopback)")
    ray_cli = Path(sys.executable).with_name("ray")
    if not ray_cli.exists():
        ray_cli = shutil.which("ray")
        if ray_cli is None:
            pytest.skip("the `ray` command is not installed beside this Python")
    for ip in (HEAD_IP, WORKER_IP):
        try:
            _free_port(ip)
        except OSError as error:
            pytest.skip(f"cannot bind the loopback address {ip}: {error}")
    # Ray's unix sockets live under the temp dir, and socket paths are limited to ~107 bytes: keep it short.
    temp_dir = Path(tempfile.mkdtemp(prefix="scnn-ray-", dir="/tmp" if Path("/tmp").is_dir() else None))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    port = _free_port(HEAD_IP)
    # Free ports for what would otherwise use fixed defaults (6379, 8265, 52365), so that another Ray
    # instance on this machine neither collides with this cluster nor is joined by it.
    common = ["--num-cpus=1", "--disable-usage-stats", f"--temp-dir={temp_dir}"]
    head = [str(ray_cli), "start", "--head", f"--node-ip-address={HEAD_IP}", f"--port={port}",
            f"--dashboard-port={_free_port(HEAD_IP)}",
            f"--dashboard-agent-listen-port={_free_port(HEAD_IP)}", "--include-dashboard=false", *common]
    worker = [str(ray_cli), "start", f"--address={HEAD_IP}:{port}", f"--node-ip-address={WORKER_IP}",
              f"--dashboard-agent-listen-port={_free_port(WORKER_IP)}", *common]
    sessions: set[int] = set()

    def ray_start(command: list[str], log: Path) -> tuple[int | None, str]:
        with log.open("w") as out:  # a file, not a pipe: Ray's daemons inherit it and outlive `ray start`
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                       start_new_session=True)
            sessions.add(process.pid)
            try:
                code = process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                process.kill()
                code = None
        return code, log.read_text()[-3000:]

    try:
        code, output = ray_start(head, temp_dir / "head.log")
        if code != 0:
            pytest.skip(f"`ray start --head` cannot run here (exit {code}):\n{output}")
        code, output = ray_start(worker, temp_dir / "worker.log")
        assert code == 0, f"the worker node did not start (exit {code}):\n{output}"
        yield {"address": f"{HEAD_IP}:{port}", "env": env, "sessions": sessions}
    finally:
        _stop_sessions(sessions)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.cluster
def test_search_on_an_existing_two_node_cluster(fsdd_dir, feature_cache, tmp_path, loopback_ray_cluster):
    """`--address` runs the search on a cluster started with `ray start`: trials are spread over both nodes."""
    import subprocess

    script = Path(__file__).resolve().parents[1] / "sweeps" / "tune_neuron.py"
    out = tmp_path / "out"
    command = [sys.executable, str(script), "--address", loopback_ray_cluster["address"], "--search", "random",
               "--num-samples", "2", "--epochs", "1", "--train-per-class", "3", "--data-dir", str(fsdd_dir),
               "--cache-dir", str(feature_cache), "--out", str(out)]
    log = tmp_path / "driver.log"
    with log.open("w") as handle:
        driver = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=loopback_ray_cluster["env"],
                                  start_new_session=True)
        loopback_ray_cluster["sessions"].add(driver.pid)
        try:
            code = driver.wait(timeout=240)
        except subprocess.TimeoutExpired:
            code = None
    output = log.read_text()
    assert code == 0, f"the search failed (exit {code}):\n{output[-4000:]}"
    assert f"connected to the Ray cluster at {loopback_ray_cluster['address']}: 2 nodes" in output, output[-4000:]

    summary = json.loads((out / "summary.json").read_text())
    assert summary["trials"] == 2 and summary["finished_trials"] == 2
    assert summary["trials_per_node"] == {HEAD_IP: 1, WORKER_IP: 1}, "each node should have run one trial"
    trials = json.loads((out / "trials.json").read_text())
    assert sorted(t["node_ip"] for t in trials) == [HEAD_IP, WORKER_IP] and all(t["synops"] > 0 for t in trials)
    assert len(list((out / "ray" / "search").glob("*/result.json"))) == 2
    assert 0 <= summary["retrained_test_accuracy"] <= 1 and (out / "pareto.png").exists()
