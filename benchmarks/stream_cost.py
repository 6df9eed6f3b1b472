"""Cost of listening as the audio arrives: compute per 16 ms frame on one core, real-time factor and
synaptic operations per second of audio of a streaming model, beside a whole-word model's cost per inference.

For each of N test recordings of the checkpoint's split, the recording is pushed through a
:class:`scnn.stream.Streamer` in chunks of one hop (16 ms), once with each engine ("numpy": the
frame runner, "torch": ``model.step``), and separately through the causal front end alone. Times
are per frame (``time.perf_counter``, one torch thread, best of ``--repeats`` passes over all N
recordings, the engines interleaved pass by pass); the real-time factor is compute time / audio
time (below 1: faster than real time). SynOps per second of audio are NeuroBench's effective
synaptic operations (``scnn.metrics.profile_model``) of the streaming model on the same recordings,
divided by their length in seconds (frames x hop / sample rate). ``--baseline`` adds a whole-word
model's (e.g. Model B's) SynOps per inference on its own test recordings, for comparison.

``--integer STEM`` (the integer artefact ``scnn quantize`` wrote for this checkpoint, e.g.
``runs/quant/streaming_int8/integer``) times the integer model too, from input codes (the front end
excluded): the numpy :class:`scnn.quant.integer.IntegerStreamer` one frame at a time, and the C of
``scnn export-c`` (gcc -O3; the harness classifies the samples ``--c-passes`` times, minus a run on
no samples, so process start cancels out), after checking the C logits bit-exact against numpy.

Writes the "stream_cost" table (scnn.result_tables, docs/results_formats.md): OUT/summary.csv, one row for
the run, and its sidecar OUT/summary.json; and OUT/stream_cost.json, the same numbers nested.

Example:
    python benchmarks/stream_cost.py --checkpoint runs/streaming/best.pt \\
        --baseline runs/float/model_b_t10/best.pt --data-dir ../shared/data/fsdd/recordings --out runs/stream_cost
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch


def _frame_costs(streamers: dict, waveforms: list[np.ndarray], repeats: int) -> dict:
    """Seconds per frame of each engine's streamer (and of the front end alone), best of ``repeats``
    interleaved passes."""
    streamer = next(iter(streamers.values()))
    hop = streamer.features.hop_length
    frames = sum(len(w) // hop for w in waveforms)
    best = {name: float("inf") for name in [*streamers, "front_end"]}
    for _ in range(repeats):
        for name, streamer in streamers.items():
            start = time.perf_counter()
            for waveform in waveforms:
                streamer.run(waveform, chunk_ms=1000 * streamer.frame_seconds)
            best[name] = min(best[name], (time.perf_counter() - start) / frames)
        start = time.perf_counter()
        for waveform in waveforms:
            streamer.front_end.reset()
            for offset in range(0, len(waveform), hop):
                streamer.front_end.push_frames(waveform[offset:offset + hop])
        best["front_end"] = min(best["front_end"], (time.perf_counter() - start) / frames)
    return best


def _integer_costs(stem: str, x: torch.Tensor, out: Path, repeats: int, c_passes: int) -> dict:
    """ms per frame of the integer model from input codes: numpy IntegerStreamer and the exported C."""
    import subprocess

    from scnn.quant.export_c import build_host, export_c, parse_harness_output
    from scnn.quant.integer import IntegerStreamer, load_integer, quantize_input, run_integer

    description, arrays = load_integer(stem)
    codes = quantize_input(description, x.numpy())
    frames = codes.shape[-1]
    streamer = IntegerStreamer(description, arrays)

    def numpy_frames():
        for index in range(len(codes)):
            streamer.reset()
            for t in range(frames):
                streamer.step(codes[index:index + 1, :, :, t])

    export_c(stem, out / "c")
    binary = build_host(out / "c")
    codes.tofile(out / "c" / "codes.bin")
    (out / "c" / "empty.bin").write_bytes(b"")

    def run_c(path: Path, passes: int = 1) -> str:
        return subprocess.run([str(binary), str(path), str(passes)], capture_output=True, text=True, check=True).stdout

    rows = parse_harness_output(run_c(out / "c" / "codes.bin"))
    if not np.array_equal([row[1] for row in rows], run_integer(description, arrays, codes).logits):
        raise RuntimeError("the exported C does not reproduce the numpy integer logits")
    best = {"numpy": float("inf"), "c": float("inf"), "c_empty": float("inf")}
    for _ in range(repeats):  # interleaved, best of repeats
        for name, function in (("numpy", numpy_frames), ("c", lambda: run_c(out / "c" / "codes.bin", c_passes)),
                               ("c_empty", lambda: run_c(out / "c" / "empty.bin"))):
            start = time.perf_counter()
            function()
            best[name] = min(best[name], time.perf_counter() - start)
    total = len(codes) * frames
    c_ms = 1000 * (best["c"] - best["c_empty"]) / (total * c_passes)
    if c_ms <= 0:
        raise ValueError("C timing lost in process-start noise: raise --c-passes or --samples")
    return {"numpy_integer_streamer": 1000 * best["numpy"] / total, "c_O3": c_ms, "c_bit_exact_with_numpy": True}


def table_row(result: dict) -> dict:
    """The "stream_cost" table's row of one run (``result``: what :func:`main` returns, stream_cost.json)."""
    frame = result["ms_per_frame"]
    factor = result["real_time_factor"]
    integer = result.get("ms_per_frame_integer_from_codes") or {}
    baseline = result.get("baseline") or {}
    return {
        "checkpoint": result["checkpoint"], "samples": result["samples"], "repeats": result["repeats"],
        "frame_ms": result["frame_ms"], "front_end_ms_per_frame": frame["front_end"],
        "numpy_ms_per_frame": frame["numpy_frame_runner_total"], "torch_ms_per_frame": frame["torch_step_total"],
        "numpy_real_time_factor": factor["numpy_frame_runner"], "torch_real_time_factor": factor["torch_step"],
        "synops_per_sample": result["synops_per_sample"],
        "seconds_of_audio_per_sample": result["seconds_of_audio_per_sample"],
        "synops_per_second_of_audio": result["synops_per_second_of_audio"],
        "dense_macs_per_second_of_audio": result["dense_macs_per_second_of_audio"],
        "parameters": result["parameters"],
        "integer_numpy_ms_per_frame": integer.get("numpy_integer_streamer"),
        "integer_c_ms_per_frame": integer.get("c_O3"),
        "integer_c_bit_exact": integer.get("c_bit_exact_with_numpy"),
        "integer_numpy_real_time_factor": factor.get("integer_numpy_integer_streamer"),
        "integer_c_real_time_factor": factor.get("integer_c_O3"),
        "baseline_checkpoint": baseline.get("checkpoint"),
        "baseline_synops_per_inference": baseline.get("synops_per_inference"),
        "baseline_dense_macs_per_inference": baseline.get("dense_macs_per_inference"),
        "baseline_parameters": baseline.get("parameters"),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="streaming model checkpoint (best.pt of scnn train)")
    parser.add_argument("--baseline", help="a whole-word model's checkpoint (e.g. Model B) for SynOps per inference")
    parser.add_argument("--data-dir", help="audio folder (default: the checkpoint's)")
    parser.add_argument("--samples", type=int, default=50, help="test recordings (default 50)")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many passes (default 3)")
    parser.add_argument("--integer", help="integer artefact stem of this checkpoint (scnn quantize's OUT/integer)")
    parser.add_argument("--c-passes", type=int, default=20, help="C harness passes per timed run (default 20)")
    parser.add_argument("--out", default="runs/stream_cost", help="output folder (stream_cost.json)")
    args = parser.parse_args(argv)

    from scnn.data.prepare import checkpoint_data
    from scnn.features.mfcc import load_audio
    from scnn.io import write_json
    from scnn.metrics import profile_model
    from scnn.result_tables import write_table
    from scnn.stream import Streamer
    from scnn.train.evaluate import load_trained_model

    torch.set_num_threads(1)
    model, saved = load_trained_model(args.checkpoint)
    data = checkpoint_data(saved, {"data_dir": args.data_dir})
    streamers = {engine: Streamer.from_checkpoint(args.checkpoint, engine=engine) for engine in ("numpy", "torch")}
    files = data.test_files[:args.samples]
    waveforms = [load_audio(path, streamers["numpy"].sample_rate) for path in files]
    costs = _frame_costs(streamers, waveforms, args.repeats)
    frame_s = streamers["numpy"].frame_seconds
    x = data.test[0][:args.samples]
    profile = profile_model(model.eval(), x).row()
    seconds_per_sample = model.num_steps * frame_s
    result = {
        "checkpoint": str(args.checkpoint), "samples": len(files), "repeats": args.repeats,
        "machine": f"{platform.processor() or platform.machine()}, 1 torch thread",
        "frame_ms": 1000 * frame_s,
        "ms_per_frame": {
            "front_end": 1000 * costs["front_end"],
            "numpy_frame_runner_total": 1000 * costs["numpy"],
            "torch_step_total": 1000 * costs["torch"]},
        "real_time_factor": {"numpy_frame_runner": costs["numpy"] / frame_s, "torch_step": costs["torch"] / frame_s},
        "synops_per_sample": profile["synops"], "seconds_of_audio_per_sample": seconds_per_sample,
        "synops_per_second_of_audio": profile["synops"] / seconds_per_sample,
        "dense_macs_per_second_of_audio": profile["dense_macs"] / seconds_per_sample,
        "parameters": profile["parameters"],
    }
    if args.baseline:
        baseline, baseline_saved = load_trained_model(args.baseline)
        baseline_data = checkpoint_data(baseline_saved, {"data_dir": args.data_dir})
        row = profile_model(baseline.eval(), baseline_data.test[0][:args.samples]).row()
        result["baseline"] = {"checkpoint": str(args.baseline), "synops_per_inference": row["synops"],
                              "dense_macs_per_inference": row["dense_macs"], "parameters": row["parameters"]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.integer:
        integer = _integer_costs(args.integer, x, out, args.repeats, args.c_passes)
        result["ms_per_frame_integer_from_codes"] = integer
        result["real_time_factor"].update({f"integer_{name}": value / (1000 * frame_s) for name, value
                                           in integer.items() if isinstance(value, float)})
    write_table([table_row(result)], out / "summary.csv", "stream_cost",
                {"machine": result["machine"], "argv": list(sys.argv[1:] if argv is None else argv)})
    write_json(out / "stream_cost.json", result)
    for key in ("ms_per_frame", "ms_per_frame_integer_from_codes", "real_time_factor"):
        if key in result:
            print(key, {name: round(value, 4) for name, value in result[key].items() if isinstance(value, float)})
    print(f"SynOps per second of audio {result['synops_per_second_of_audio']:,.0f}"
          + (f"; baseline per inference {result['baseline']['synops_per_inference']:,.0f}" if args.baseline else ""))
    return result


if __name__ == "__main__":
    main()
