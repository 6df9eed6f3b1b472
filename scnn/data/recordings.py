"""Any user's recordings, organised one of the common ways; registers dataset "recordings".

Three layouts, chosen by the data config:

- class folders (neither option given): ``root/<label>/*.wav``, as dataset "folders";
- a file-name pattern (``data.label_pattern``): every audio file under ``root`` (any depth)
  whose name the regular expression matches in full; its named group ``label`` is the
  class, its group ``speaker`` (optional) the speaker, else the name of the folder the file
  is in when that is not ``root`` (speaker folders: ``root/<speaker>/<label>_<n>.wav``);
- a CSV manifest (``data.manifest``): columns ``path,label`` and optionally ``speaker``,
  paths relative to the manifest's folder (``root`` is that folder).

Class names are the labels sorted (numerically when every label is an integer). Any sample
rate (resampled to ``FeatureConfig.sample_rate`` when read; the cache keys the features by
the whole feature config and each file's content), any length (``FeatureConfig.fit``: "center"
pads or crops the waveform around its middle to ``num_frames`` hops, "end" pads or crops the
MFCC's frames at the end). Files that cannot be used (a name the pattern does not match, a
manifest row whose file is missing, audio outside the class folders) are returned in
``skipped``: an error naming them all, or left out and reported with ``skip_bad``, as for FSDD.
"""

from __future__ import annotations

import re
from pathlib import Path

from scnn.data.folders import scan_class_folders
from scnn.data.registry import DatasetListing, Recording, register_dataset
from scnn.data.splits import read_manifest

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".aiff", ".aif")


def compile_label_pattern(pattern: str, option: str = "data.label_pattern") -> re.Pattern:
    """The compiled expression; it must have a named group ``label`` (``speaker`` is optional)."""
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise ValueError(f"{option} {pattern!r} is not a regular expression: {error}") from None
    if "label" not in compiled.groupindex:
        raise ValueError(f"{option} {pattern!r} has no named group (?P<label>...) saying which part of the file "
                         "name is the class")
    return compiled


def class_names_of(labels) -> list[str]:
    """Distinct labels sorted: numerically when all are integers ("2" before "10"), else as text."""
    labels = sorted(set(labels))
    if labels and all(re.fullmatch(r"-?\d+", label) for label in labels):
        return sorted(labels, key=int)
    return labels


def _listing(entries: list[tuple[Path, str, str | None]], root: Path, problems: list, what: str) -> DatasetListing:
    if not entries:
        shown = f" ({len(problems)} unusable)" if problems else ""
        raise ValueError(f"{what}: no usable recordings{shown}" +
                         (f"; first: {problems[0][0]}: {problems[0][1]}" if problems else ""))
    class_names = class_names_of(label for _, label, _ in entries)
    index = {name: number for number, name in enumerate(class_names)}
    recordings = [Recording(path, index[label], speaker) for path, label, speaker in sorted(entries)]
    return DatasetListing(recordings, class_names, root, skipped=problems)


def scan_by_pattern(root: str | Path, pattern: str, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> DatasetListing:
    """Every audio file under ``root`` whose name ``pattern`` matches (label, speaker from its groups)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    compiled = compile_label_pattern(pattern)
    entries, problems = [], []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in extensions or path.name.startswith("."):
            continue
        match = compiled.fullmatch(path.name)
        if match is None or not match["label"]:
            problems.append((str(path), f"file name does not match data.label_pattern {pattern!r}"))
            continue
        speaker = match.groupdict().get("speaker") or (path.parent.name if path.parent != root else None)
        entries.append((path, match["label"], speaker))
    return _listing(entries, root, problems, f"data folder {root}")


def scan_manifest(manifest: str | Path) -> DatasetListing:
    """The recordings a CSV manifest lists (columns path, label, optionally speaker)."""
    rows = read_manifest(manifest, required=("path", "label"))
    entries, problems = [], []
    for row in rows:
        path = Path(row["path"])
        if not row.get("label"):
            problems.append((str(path), f"no label in manifest {manifest}"))
        elif not path.is_file():
            problems.append((str(path), f"listed in manifest {manifest} but missing"))
        else:
            entries.append((path, row["label"], row.get("speaker") or None))
    return _listing(entries, Path(manifest).parent, problems, f"manifest {manifest}")


@register_dataset("recordings")
def recordings_listing(config) -> DatasetListing:
    """Class folders, speaker folders with the label in the file name, or a CSV manifest (module docstring)."""
    if config.manifest:
        if config.label_pattern:
            raise ValueError("data.manifest gives the labels; data.label_pattern cannot be used with it")
        return scan_manifest(config.manifest)
    if config.data_dir is None:
        raise ValueError("dataset 'recordings' needs --data-dir (class folders, or files named as "
                         "data.label_pattern says) or data.manifest (a CSV of path,label,speaker)")
    if config.label_pattern:
        return scan_by_pattern(config.data_dir, config.label_pattern)
    recordings, class_names, problems = scan_class_folders(config.data_dir, AUDIO_EXTENSIONS)
    return DatasetListing(recordings, class_names, Path(config.data_dir), skipped=problems)
