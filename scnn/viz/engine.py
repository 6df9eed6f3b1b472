"""The engine benchmark's grid as one figure: speed-ups against the step loop and SpikingJelly.

Reads the "engine" table (``benchmarks/bench_engine.py``, :mod:`scnn.result_tables`) back
through :func:`scnn.result_tables.read_table`, so a stale or hand-edited file is refused with
the command that rewrites it.
"""

from __future__ import annotations

from pathlib import Path

from scnn.viz.plots import _save, plt

# The targets, drawn as dashed lines (training: 2.5x the loop, 2x SpikingJelly; inference: 5x both).
_TARGET_LINES = {"train": {"train_speedup": 2.5, "train_sj_speedup": 2.0},
                 "infer": {"infer_speedup": 5.0, "infer_sj_speedup": 5.0}}
_PEERS = {"train": (("train_speedup", "vs snntorch step loop"), ("train_sj_speedup", "vs SpikingJelly")),
          "infer": (("infer_speedup", "vs snntorch step loop"), ("infer_sj_speedup", "vs SpikingJelly"))}


def engine_grid_figure(table: str | Path, out: str | Path) -> Path:
    """Bar chart of the engine's speed-ups, one column of panels per model, rows training and
    inference; one bar group per cell (T, batch), the targets as dashed lines. Cells a peer did not
    run in (no SpikingJelly) have no bar. Returns the PNG's path."""
    from scnn.result_tables import read_table

    rows = read_table(table, "engine")
    if not rows:
        raise ValueError(f"{table}: the engine table has no rows to draw")
    models = list(dict.fromkeys(row["model"] for row in rows))
    figure, axes = plt.subplots(2, len(models), figsize=(4.2 * len(models), 6.4), squeeze=False)
    colours = ("tab:blue", "tab:orange")
    for column, model in enumerate(models):
        cells = [row for row in rows if row["model"] == model]
        labels = [f"T{row['num_steps']}\nB{row['batch_size']}" for row in cells]
        for line, phase in enumerate(("train", "infer")):
            axis = axes[line][column]
            width = 0.38
            for offset, ((key, label), colour) in enumerate(zip(_PEERS[phase], colours)):
                positions = [index + (offset - 0.5) * width for index in range(len(cells))]
                values = [row[key] if row[key] is not None else 0.0 for row in cells]
                axis.bar(positions, values, width, label=label, color=colour)
                target = _TARGET_LINES[phase][key]
                axis.axhline(target, color=colour, linestyle="--", linewidth=0.9)
            axis.axhline(1.0, color="grey", linewidth=0.6)
            axis.set_xticks(range(len(cells)), labels, fontsize=8)
            axis.set_title(f"{model}: {'training' if phase == 'train' else 'inference'}", fontsize=10)
            if column == 0:
                axis.set_ylabel("speed-up of the engine (x)")
            if line == 0 and column == 0:
                axis.legend(fontsize=8, loc="upper left")
    figure.suptitle("scnn engine against peers, same weights, interleaved (dashed: targets)", fontsize=11)
    figure.tight_layout()
    path = _save(figure, out)
    plt.close(figure)
    return path
