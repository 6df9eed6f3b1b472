"""Listen to a recording as if it arrived live: chunk by chunk through a frame-by-frame model.

Prints what the model hears over time and the words it detects (start, end, class, evidence),
draws the class evidence against time (PNG), and reports the real-time factor.

Example:
    scnn stream digits.wav --checkpoint runs/streaming/best.pt --plot digits_evidence.png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from scnn.cli.common import nonnegative_float, positive_float

    parser.add_argument("file", help="audio file (wav, flac; resampled to the model's rate)")
    parser.add_argument("--checkpoint", required=True, help="best.pt of a streaming model (e.g. configs/fsdd_streaming.yaml)")
    parser.add_argument("--chunk-ms", type=positive_float, default=16.0,
                        help="audio per push in milliseconds (default 16: one frame)")
    parser.add_argument("--every", type=positive_float, default=0.25,
                        help="print what it hears every this many seconds of audio (default 0.25)")
    parser.add_argument("--plot", help="class evidence against time (default: <file stem>_evidence.png here)")
    parser.add_argument("--level-db", type=positive_float, default=30.0,
                        help="speech: louder than this many dB below the loudest frame so far (default 30)")
    parser.add_argument("--reset-after-silence", type=nonnegative_float, default=0.3,
                        help="reset every neuron after this many seconds of silence, as before each training "
                             "word (default 0.3; 0: never)")
    parser.add_argument("--enrol", nargs="+", metavar="WAV",
                        help="recordings of the listener, for a checkpoint trained with data.speaker_norm (their "
                             "statistics stand in for the speaker's)")
    parser.add_argument("--min-gap", type=nonnegative_float, default=0.2,
                        help="seconds of silence that separate two words (default 0.2)")


def run(args: argparse.Namespace) -> dict:
    import numpy as np

    from scnn.cli.common import check_checkpoint
    from scnn.features.mfcc import load_audio
    from scnn.stream import Streamer, detect, speech_frames
    from scnn.viz.plots import plot_class_evidence

    path = Path(args.file)
    if not path.is_file():
        raise FileNotFoundError(f"audio file {path} does not exist")
    check_checkpoint(args.checkpoint)
    missing = [name for name in args.enrol or [] if not Path(name).is_file()]
    if missing:
        raise FileNotFoundError(f"--enrol: {len(missing)} recording(s) do not exist: {', '.join(missing[:3])}")
    streamer = Streamer.from_checkpoint(args.checkpoint, enrolment=args.enrol,
                                        reset_after_silence_s=args.reset_after_silence or None, level_db=args.level_db)
    waveform = load_audio(path, streamer.sample_rate)
    started = time.perf_counter()
    evidence, levels = streamer.run(waveform, args.chunk_ms)
    seconds = time.perf_counter() - started
    duration = len(waveform) / streamer.sample_rate
    frame = streamer.frame_seconds
    speech = speech_frames(levels, args.level_db)
    every = max(1, int(round(args.every / frame)))
    print(f"{path}: {duration:.2f} s at {streamer.sample_rate} Hz, {len(evidence)} frames of {frame * 1000:.0f} ms")
    for end in range(every, len(evidence) + 1, every):
        window = slice(end - every, end)
        label = int(evidence[window].mean(axis=0).argmax())
        heard = f"hears {streamer.class_names[label]}" if speech[window].any() else "silence"
        print(f"  {end * frame:6.2f} s  {heard}")
    detections = detect(evidence, levels, frame, streamer.class_names, level_db=args.level_db,
                        min_gap_s=args.min_gap)
    print(f"{len(detections)} word(s) detected:")
    for found in detections:
        print(f"  {found.start_s:6.2f} - {found.end_s:5.2f} s  {found.name}  (evidence {found.confidence:.2f})")
    plot = Path(args.plot) if args.plot else Path(f"{path.stem}_evidence.png")
    plot_class_evidence(np.arange(1, len(evidence) + 1) * frame, evidence, streamer.class_names, plot,
                        detections=[d.to_dict() for d in detections], title=path.name)
    factor = seconds / duration if duration else float("nan")
    print(f"real-time factor {factor:.4f} ({seconds:.2f} s of compute for {duration:.2f} s of audio, "
          f"{seconds / max(1, len(evidence)) * 1000:.3f} ms per frame); evidence plot: {plot}")
    return {"detections": [d.to_dict() for d in detections], "evidence": evidence, "real_time_factor": factor,
            "plot": str(plot)}
