"""Train / validation / test splits of a list of recordings, and the groups (speakers) they keep apart.

A recording's group is its ``speaker``: the dataset's own metadata (FSDD's file names), or,
when the user gives one, a file-name regular expression with a named group ``group`` (or
``speaker``) or a CSV manifest with columns ``path`` and ``speaker`` (:func:`assign_groups`).
The splits "speaker" and "group" keep train and test group-disjoint; ``val_speakers`` or
``num_val_speakers`` make validation group-disjoint from both (a speaker-independent claim
needs model selection on voices training never heard). "official" and "random" are unchanged.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from scnn.data.registry import Recording
from scnn.io import describe_problems


SPLITS = ("official", "speaker", "random", "group")



@dataclass(frozen=True)
class Split:
    """Disjoint train, validation and test recordings."""

    train: list[Recording]
    val: list[Recording]
    test: list[Recording]



def parse_names(text: str | list | tuple | None) -> list[str]:
    """``"a, b"`` or ``["a", "b"]`` -> ``["a", "b"]`` (order kept, blanks dropped); None -> []."""
    if text is None:
        return []
    items = text.split(",") if isinstance(text, str) else list(text)
    return [str(item).strip() for item in items if str(item).strip()]


# --------------------------------------------------------------------------- where groups come from


def compile_group_pattern(pattern: str, option: str = "data.group_pattern") -> re.Pattern:
    """The compiled regular expression; it must have a named group ``group`` (or ``speaker``)."""
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise ValueError(f"{option} {pattern!r} is not a regular expression: {error}") from None
    if not {"group", "speaker"} & set(compiled.groupindex):
        raise ValueError(f"{option} {pattern!r} has no named group (?P<group>...) saying which part of the file "
                         "name is the speaker")
    return compiled


def read_manifest(path: str | Path, required: tuple[str, ...] = ("path",)) -> list[dict]:
    """Rows of a CSV manifest (header line; columns such as ``path,label,speaker``) as dicts.

    ``path`` values are made absolute relative to the manifest's folder. Raises
    FileNotFoundError for a missing manifest, ValueError naming missing columns or the line
    numbers of rows without a path.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = [name.strip() for name in reader.fieldnames or []]
        missing = [name for name in required if name not in columns]
        if missing:
            raise ValueError(f"manifest {path}: missing column{'s' if len(missing) > 1 else ''} "
                             f"{', '.join(missing)} (its header: {', '.join(columns) or 'none'})")
        rows, empty = [], []
        for number, raw in enumerate(reader, start=2):
            row = {key.strip(): (value or "").strip() for key, value in raw.items() if key is not None}
            if not row.get("path"):
                empty.append(str(number))
                continue
            file = Path(row["path"]).expanduser()
            row["path"] = str(file if file.is_absolute() else path.parent / file)
            rows.append(row)
    if empty:
        raise ValueError(f"manifest {path}: line{'s' if len(empty) > 1 else ''} {', '.join(empty)} "
                         "without a path")
    return rows


def _key(path) -> str:
    return str(Path(path).expanduser().resolve())


def assign_groups(recordings: list[Recording], pattern: str | None = None,
                  manifest: str | Path | None = None) -> list[Recording]:
    """The recordings with ``speaker`` taken from ``pattern`` or ``manifest`` (neither: unchanged).

    pattern: a regular expression matched in full against each file name (not the folder), with
    a named group ``group`` (or ``speaker``): ``r"(?P<group>[a-z]+)_\\d+\\.wav"``. manifest: a CSV
    file with columns ``path`` and ``speaker`` (or ``group``). A file the pattern does not match,
    or that the manifest does not list or gives no speaker, is an error naming every such file.
    """
    if pattern and manifest:
        raise ValueError("give the groups by data.group_pattern or by data.group_manifest, not both")
    if pattern:
        compiled = compile_group_pattern(pattern)
        name = "group" if "group" in compiled.groupindex else "speaker"
        grouped, problems = [], []
        for recording in recordings:
            match = compiled.fullmatch(Path(recording.path).name)
            if match is None or not match[name]:
                problems.append((str(recording.path), f"file name does not match data.group_pattern {pattern!r}"))
            else:
                grouped.append(replace(recording, speaker=match[name]))
        if problems:
            raise ValueError(f"cannot tell the speaker of {describe_problems(problems)}")
        return grouped
    if manifest:
        rows = read_manifest(manifest)
        column = "speaker" if rows and "speaker" in rows[0] else "group"
        if rows and column not in rows[0]:
            raise ValueError(f"manifest {manifest}: no 'speaker' (or 'group') column")
        speaker_of = {_key(row["path"]): row.get(column) for row in rows}
        grouped, problems = [], []
        for recording in recordings:
            speaker = speaker_of.get(_key(recording.path))
            if speaker is None:
                problems.append((str(recording.path), f"not listed in manifest {manifest}"))
            elif not speaker:
                problems.append((str(recording.path), f"no speaker in manifest {manifest}"))
            else:
                grouped.append(replace(recording, speaker=speaker))
        if problems:
            raise ValueError(f"cannot tell the speaker of {describe_problems(problems)}")
        return grouped
    return list(recordings)


def speakers_of(recordings: list[Recording]) -> list[str]:
    """The sorted groups of recordings that have one."""
    return sorted({r.speaker for r in recordings if r.speaker is not None})


def _require_speakers(recordings: list[Recording], why: str) -> list[str]:
    unknown = [(str(r.path), "no speaker (group)") for r in recordings if r.speaker is None]
    if unknown:
        raise ValueError(f"{why} needs every recording's speaker; {describe_problems(unknown)} "
                         "(give data.group_pattern or data.group_manifest)")
    return speakers_of(recordings)


def _check_known(names: list[str], known: list[str], option: str) -> None:
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown speaker{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} in "
                         f"{option}; known speakers: {', '.join(known)}")


# --------------------------------------------------------------------------- splitting


def _stratified_take(recordings: list[Recording], fraction: float, seed: int) -> tuple[list, list]:
    """(rest, taken): ``round(fraction * n_class)`` recordings per class chosen with ``seed``."""
    rng = np.random.default_rng(seed)
    taken_ids = set()
    for label in sorted({r.label for r in recordings}):
        members = sorted((r for r in recordings if r.label == label), key=lambda r: (str(r.path), r.index or 0))
        count = int(round(fraction * len(members)))
        for index in rng.permutation(len(members))[:count]:
            taken_ids.add(members[index].key)  # path, or path#row where one file holds many samples
    rest = [r for r in recordings if r.key not in taken_ids]
    taken = [r for r in recordings if r.key in taken_ids]
    return rest, taken


def choose_groups(groups: list[str], count: int, seed: int) -> list[str]:
    """``count`` of the sorted ``groups`` chosen with ``seed`` (the same for the same seed), sorted."""
    groups = sorted(groups)
    rng = np.random.default_rng(seed)
    return sorted(groups[index] for index in rng.permutation(len(groups))[:count])


def split_recordings(recordings: list[Recording], split: str = "official", val_fraction: float = 0.1, seed: int = 0,
                     holdout_speaker: str | list = "theo", test_fraction: float = 0.1,
                     val_speakers: str | list | None = None, num_val_speakers: int = 0) -> Split:
    """Split into train / validation / test.

    official: the dataset's own parts (FSDD: takes 0-4 test, 5-49 train, upstream's definition; Speech
    Commands: its list files, and then its own validation part is the validation split, val_fraction unused).
    speaker: every file of ``holdout_speaker`` (one name, or several as ``"a,b"`` or a list) is test.
    random: stratified ``test_fraction`` per class, seeded. group: a seeded choice of
    ``max(1, round(test_fraction * groups))`` speakers is test.

    Validation: with ``val_speakers`` (names) or ``num_val_speakers`` (a seeded choice among the
    training speakers) every file of those speakers is validation, so that validation, training
    and test are speaker-disjoint; otherwise ``val_fraction`` of train is carved out
    (stratified, seeded), which keeps the training speakers in validation.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    val_names = parse_names(val_speakers)
    if val_names and num_val_speakers:
        raise ValueError("give the validation speakers by name (val_speakers) or by number (num_val_speakers), "
                         "not both")
    if num_val_speakers < 0:
        raise ValueError(f"num_val_speakers must be >= 0, got {num_val_speakers}")
    recordings = sorted(recordings, key=lambda r: (str(r.path), r.index or 0))
    if split == "official":
        if any(r.official_part is None for r in recordings):
            raise ValueError("this dataset defines no official split (as FSDD's takes 0-4 for test); "
                             "use 'random', 'speaker' or 'group'")
        train = [r for r in recordings if r.official_part == "train"]
        test = [r for r in recordings if r.official_part == "test"]
        val = [r for r in recordings if r.official_part == "val"]
        if val:  # the dataset's own validation part (Speech Commands' validation_list.txt), not one carved out
            return Split(train=train, val=val, test=test)
    elif split == "speaker":
        speakers = _require_speakers(recordings, "the 'speaker' split")
        held_out = parse_names(holdout_speaker)
        if not held_out:
            raise ValueError("the 'speaker' split needs holdout_speaker (one name or several as a,b)")
        _check_known(held_out, speakers, "holdout_speaker")
        train = [r for r in recordings if r.speaker not in held_out]
        test = [r for r in recordings if r.speaker in held_out]
        if not train:
            raise ValueError(f"holdout_speaker {', '.join(held_out)} leaves no speaker for training")
    elif split == "group":
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
        speakers = _require_speakers(recordings, "the 'group' split")
        if len(speakers) < 2:
            raise ValueError(f"the 'group' split needs at least 2 speakers; found {len(speakers)}: "
                             f"{', '.join(speakers) or 'none'}")
        count = min(len(speakers) - 1, max(1, int(round(test_fraction * len(speakers)))))
        held_out = choose_groups(speakers, count, seed)
        train = [r for r in recordings if r.speaker not in held_out]
        test = [r for r in recordings if r.speaker in held_out]
    else:
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
        train, test = _stratified_take(recordings, test_fraction, seed)
    if val_names or num_val_speakers:
        train, val = _speaker_validation(train, test, val_names, num_val_speakers, seed)
    else:
        train, val = _stratified_take(train, val_fraction, seed + 1_000_003)
    return Split(train=train, val=val, test=test)


def _speaker_validation(train: list[Recording], test: list[Recording], names: list[str], count: int,
                        seed: int) -> tuple[list, list]:
    """(train, val): every training file of the validation speakers moves to validation."""
    speakers = _require_speakers(train, "a speaker-disjoint validation set")
    if names:
        in_test = [name for name in names if name in speakers_of(test) and name not in speakers]
        if in_test:
            raise ValueError(f"val_speakers {', '.join(in_test)} are test speakers; validation speakers must be "
                             f"among the training speakers: {', '.join(speakers)}")
        _check_known(names, speakers, "val_speakers")
        chosen = names
    else:
        if count >= len(speakers):
            raise ValueError(f"num_val_speakers {count} leaves no training speaker: the training part has "
                             f"{len(speakers)} ({', '.join(speakers)})")
        chosen = choose_groups(speakers, count, seed + 2_000_003)
    rest = [r for r in train if r.speaker not in chosen]
    if not rest:
        raise ValueError(f"val_speakers {', '.join(chosen)} leave no speaker for training")
    return rest, [r for r in train if r.speaker in chosen]


# --------------------------------------------------------------------------- folds for cross-validation


def group_folds(speakers: list[str], num_folds: int | None, seed: int = 0) -> list[list[str]]:
    """The test speakers of each fold: ``num_folds`` near-equal parts of the seeded-shuffled speakers
    (k-fold by group), or one speaker per fold (leave-one-group-out) when ``num_folds`` is None.

    Every speaker is in exactly one fold's test part. More folds than speakers leave a fold
    without speakers: a ValueError that says how many there are.
    """
    speakers = sorted(set(speakers))
    if num_folds is None:
        if len(speakers) < 2:
            raise ValueError(f"leave-one-speaker-out needs at least 2 speakers; found {len(speakers)}")
        return [[speaker] for speaker in speakers]
    if num_folds < 2:
        raise ValueError(f"k-fold cross-validation needs at least 2 folds, got {num_folds}")
    if num_folds > len(speakers):
        raise ValueError(f"{num_folds} folds but only {len(speakers)} speakers ({', '.join(speakers)}): "
                         f"a fold would have no speakers; use at most {len(speakers)} folds")
    order = [speakers[index] for index in np.random.default_rng(seed).permutation(len(speakers))]
    return [sorted(part) for part in np.array_split(np.array(order, dtype=object), num_folds)]
