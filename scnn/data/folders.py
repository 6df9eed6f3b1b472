"""Users' own recordings in class folders (the Speech Commands layout ``root/<label>/*.wav``)."""

from __future__ import annotations

from pathlib import Path

from scnn.data.registry import DatasetListing, Recording, register_dataset


def list_class_folders(root: str | Path, extensions: tuple[str, ...] = (".wav", ".flac")) -> tuple[list[Recording], list[str]]:
    """Speech Commands layout ``root/<label>/*.wav``: (recordings, class names sorted).

    Folders starting with ``_`` or ``.`` (e.g. ``_background_noise_``) are skipped. A file
    named ``<speaker>_nohash_<n>.wav`` gets that speaker.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    class_names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    if not class_names:
        raise ValueError(f"data folder {root} has no class subfolders (expected root/<label>/*.wav)")
    recordings = []
    for label, name in enumerate(class_names):
        for path in sorted((root / name).iterdir()):
            if path.suffix.lower() in extensions:
                speaker = path.name.split("_nohash_")[0] if "_nohash_" in path.name else None
                recordings.append(Recording(path, label, speaker, None))
    if not recordings:
        raise ValueError(f"data folder {root}: no {'/'.join(extensions)} files in its class folders")
    return recordings, class_names



@register_dataset("folders")
def folders_listing(config) -> DatasetListing:
    """Class folders under ``config.data_dir`` (required)."""
    if config.data_dir is None:
        raise ValueError("dataset 'folders' needs --data-dir pointing at root/<label>/*.wav")
    recordings, class_names = list_class_folders(config.data_dir)
    return DatasetListing(recordings, class_names, Path(config.data_dir))
