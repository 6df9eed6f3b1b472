"""Users' own recordings in class folders (the Speech Commands layout ``root/<label>/*.wav``)."""

from __future__ import annotations

from pathlib import Path

from scnn.data.registry import DatasetListing, Recording, register_dataset
from scnn.io import describe_problems


def scan_class_folders(root: str | Path, extensions: tuple[str, ...] = (".wav", ".flac")
                       ) -> tuple[list[Recording], list[str], list[tuple[str, str]]]:
    """Speech Commands layout ``root/<label>/*.wav``: (recordings, class names sorted, problems).

    Folders starting with ``_`` or ``.`` (e.g. ``_background_noise_``) are skipped. A file
    named ``<speaker>_nohash_<n>.wav`` gets that speaker. problems: (path, reason) of audio
    files directly in ``root``, which belong to no class.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    class_names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    if not class_names:
        raise ValueError(f"data folder {root} has no class subfolders (expected root/<label>/*.wav)")
    problems = [(str(path), "audio file outside the class folders (expected root/<label>/*.wav)")
                for path in sorted(root.iterdir()) if path.is_file() and path.suffix.lower() in extensions]
    recordings = []
    for label, name in enumerate(class_names):
        for path in sorted((root / name).iterdir()):
            if path.suffix.lower() in extensions:
                speaker = path.name.split("_nohash_")[0] if "_nohash_" in path.name else None
                recordings.append(Recording(path, label, speaker, None))
    if not recordings:
        raise ValueError(f"data folder {root}: no {'/'.join(extensions)} files in its class folders")
    return recordings, class_names, problems


def list_class_folders(root: str | Path, extensions: tuple[str, ...] = (".wav", ".flac")
                       ) -> tuple[list[Recording], list[str]]:
    """(recordings, class names sorted) of :func:`scan_class_folders`; audio outside the class
    folders is an error naming every such file (the first few, then a count)."""
    recordings, class_names, problems = scan_class_folders(root, extensions)
    if problems:
        raise ValueError(f"data folder {root}: {describe_problems(problems)}")
    return recordings, class_names



@register_dataset("folders")
def folders_listing(config) -> DatasetListing:
    """Class folders under ``config.data_dir`` (required); stray audio in the root is returned in
    ``skipped`` (left out with ``skip_bad``, an error otherwise)."""
    if config.data_dir is None:
        raise ValueError("dataset 'folders' needs --data-dir pointing at root/<label>/*.wav")
    recordings, class_names, problems = scan_class_folders(config.data_dir)
    return DatasetListing(recordings, class_names, Path(config.data_dir), skipped=problems)
