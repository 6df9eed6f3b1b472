"""Spoken-digit audio: locate (or download) FSDD, parse file names, split.

Free Spoken Digit Dataset (FSDD): 3,000 mono 8 kHz WAVs named
``{digit}_{speaker}_{take}.wav``, 6 speakers, 50 takes per digit and speaker.
Upstream's official split: takes 0-4 are the test set, 5-49 the training set.

Where the recordings are found (:func:`locate_fsdd`): an explicit folder, else
``$SCNN_DATA_DIR``, else ``<user cache>/scnn/fsdd/recordings``, which is
downloaded (pinned release v1.0.10, through :mod:`scnn.data.download`: pooch, resumable,
with a progress bar), checked file by file against the SHA-256 manifest shipped with the
package, and moved into place atomically.

Users' own keyword data in the Speech Commands layout (``root/<label>/*.wav``)
goes through :func:`list_class_folders` and the same feature pipeline.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from scnn.data.download import DownloadError, download_file, sha256_of
from scnn.data.registry import DatasetListing, Recording, default_cache_dir, register_dataset
from scnn.io import describe_problems

FSDD_ENV_VAR = "SCNN_DATA_DIR"
FSDD_RELEASE_TAG = "v1.0.10"
FSDD_URL = f"https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/{FSDD_RELEASE_TAG}.zip"
FSDD_DIGITS = tuple(str(digit) for digit in range(10))
FSDD_PATTERN = re.compile(r"^(?P<digit>\d)_(?P<speaker>[A-Za-z]+)_(?P<take>\d+)\.wav$")
MANIFEST_PATH = Path(__file__).resolve().parents[1] / "resources" / "fsdd_manifest.sha256"




# --------------------------------------------------------------------------- locating and downloading




def _holds_wavs(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.wav"))


def locate_fsdd(data_dir: str | Path | None = None, download: bool = True, url: str = FSDD_URL) -> Path:
    """The folder of FSDD wavs: argument, else ``$SCNN_DATA_DIR``, else the cache (downloaded if absent).

    A folder holding a ``recordings/`` subfolder (the repository's root) is accepted too.
    A missing folder given by argument or environment raises FileNotFoundError saying
    where it looked and how to provide one; only the cache location is downloaded into.
    """
    how_to = (f"pass --data-dir DIR (a folder of FSDD .wav files), set {FSDD_ENV_VAR}=DIR, or leave both "
              f"unset to download FSDD {FSDD_RELEASE_TAG} into {default_cache_dir() / 'fsdd'}")
    if data_dir is not None or os.environ.get(FSDD_ENV_VAR):
        source = "--data-dir" if data_dir is not None else f"${FSDD_ENV_VAR}"
        folder = Path(data_dir if data_dir is not None else os.environ[FSDD_ENV_VAR]).expanduser()
        for candidate in (folder, folder / "recordings"):
            if _holds_wavs(candidate):
                return candidate
        state = "does not exist" if not folder.exists() else "holds no .wav files"
        raise FileNotFoundError(f"FSDD folder {folder} (from {source}) {state}; {how_to}")
    folder = default_cache_dir() / "fsdd" / "recordings"
    if _holds_wavs(folder):
        return folder
    if not download:
        raise FileNotFoundError(f"FSDD not found in the cache {folder} and downloading is off; {how_to}")
    try:
        return download_fsdd(folder, url=url)
    except DownloadError as error:
        # One message with what failed and both ways out: a command-line user sees only this line.
        raise DownloadError(f"{error}; to use a copy you already have, pass --data-dir DIR (a folder of FSDD "
                            f".wav files) or set {FSDD_ENV_VAR}=DIR") from error


def load_manifest(path: str | Path | None = None) -> dict[str, str]:
    """``{file name: sha256 hex}`` from a ``sha256sum``-format list (default: the packaged one)."""
    path = Path(path) if path is not None else MANIFEST_PATH
    manifest = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 64:
            raise ValueError(f"{path}:{number}: expected '<sha256>  <file name>', got {line!r}")
        manifest[parts[1].lstrip("*")] = parts[0].lower()
    return manifest


def verify_recordings(folder: str | Path, manifest: dict[str, str]) -> None:
    """Check that ``folder`` holds exactly the manifest's files with their checksums; ValueError if not."""
    folder = Path(folder)
    present = {path.name for path in folder.glob("*.wav")}
    missing = sorted(set(manifest) - present)
    extra = sorted(present - set(manifest))
    mismatched = sorted(name for name in set(manifest) & present if sha256_of(folder / name) != manifest[name])
    problems = [f"{len(names)} {what} (e.g. {', '.join(names[:3])})"
                for what, names in (("missing", missing), ("unexpected", extra), ("with wrong SHA-256", mismatched))
                if names]
    if problems:
        raise ValueError(f"{folder} does not match the FSDD manifest: " + "; ".join(problems))


def download_fsdd(dest: str | Path, url: str = FSDD_URL, manifest: dict[str, str] | None = None,
                  timeout_s: float = 60.0, progress: bool = True) -> Path:
    """Download the release zip, extract ``*/recordings/*.wav``, verify every file, move into ``dest``.

    ``url`` may be ``https://``, ``http://`` or ``file://``. On any failure a
    :class:`DownloadError` names the URL or the offending file, and neither ``dest``
    nor any temporary file remains.
    """
    dest = Path(dest)
    if dest.exists():
        raise DownloadError(f"{dest} already exists; remove it to download again")
    manifest = manifest if manifest is not None else load_manifest()
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        archive = staging / "release.zip"
        download_file(url, archive, sha256=None, what=f"FSDD {FSDD_RELEASE_TAG}", progress=progress,
                      timeout_s=timeout_s)  # GitHub's zips are not byte-stable: the files are checked instead
        unpacked = staging / "recordings"
        unpacked.mkdir()
        _extract_recordings(archive, unpacked, url)
        try:
            verify_recordings(unpacked, manifest)
        except ValueError as error:
            raise DownloadError(f"download from {url} failed verification: {error}") from None
        os.replace(unpacked, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def _extract_recordings(archive: Path, target: Path, url: str) -> None:
    """Extract the ``recordings/*.wav`` members flat into ``target`` (no path traversal)."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = [m for m in bundle.infolist() if not m.is_dir()
                       and PurePosixPath(m.filename).parent.name == "recordings"
                       and m.filename.endswith(".wav")]
            if not members:
                raise DownloadError(f"the archive from {url} holds no recordings/*.wav files")
            for member in members:
                name = PurePosixPath(member.filename).name
                if not FSDD_PATTERN.match(name):
                    raise DownloadError(f"the archive from {url} holds an unexpected file {member.filename!r}")
                with bundle.open(member) as source, open(target / name, "wb") as sink:
                    shutil.copyfileobj(source, sink)
    except zipfile.BadZipFile as error:
        raise DownloadError(f"the file downloaded from {url} is not a valid zip archive ({error})") from error


# --------------------------------------------------------------------------- listing


def parse_fsdd_name(path: str | Path) -> Recording:
    """``7_theo_12.wav`` -> Recording(label=7, speaker="theo", take=12); ValueError naming a bad name."""
    path = Path(path)
    match = FSDD_PATTERN.match(path.name)
    if match is None:
        raise ValueError(f"{path}: file name does not match FSDD's {{digit}}_{{speaker}}_{{take}}.wav pattern")
    take = int(match["take"])
    return Recording(path, int(match["digit"]), match["speaker"], take, "test" if take < 5 else "train")


def scan_fsdd(root: str | Path) -> tuple[list[Recording], list[tuple[str, str]]]:
    """Every ``.wav`` in ``root`` sorted by name: (recordings, problems), where problems are the
    (path, reason) pairs of files whose names do not follow FSDD's pattern."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"FSDD folder {root} does not exist")
    recordings, problems = [], []
    for path in sorted(root.glob("*.wav")):
        try:
            recordings.append(parse_fsdd_name(path))
        except ValueError:
            problems.append((str(path), "file name does not match FSDD's {digit}_{speaker}_{take}.wav pattern"))
    if not recordings and not problems:
        raise ValueError(f"FSDD folder {root} holds no .wav files")
    if not recordings:
        raise ValueError(f"none of the .wav files in FSDD folder {root} is named like FSDD's: "
                         + describe_problems(problems))
    return recordings, problems


def list_fsdd(root: str | Path) -> list[Recording]:
    """Every ``.wav`` in ``root``, parsed and sorted by name; one error names every bad name
    (the first few, then a count) or the empty folder."""
    recordings, problems = scan_fsdd(root)
    if problems:
        raise ValueError(f"FSDD folder {root}: {describe_problems(problems)}")
    return recordings




# --------------------------------------------------------------------------- splits








@register_dataset("fsdd")
def fsdd_listing(config) -> DatasetListing:
    """FSDD from ``config.data_dir`` / ``$SCNN_DATA_DIR`` / the cache (downloaded if allowed).

    Misnamed files are returned in ``skipped``: :func:`scnn.data.prepare.prepare_data` leaves them
    out with ``skip_bad`` and otherwise stops, naming them together with any unreadable file.
    """
    root = locate_fsdd(config.data_dir, download=config.download)
    recordings, problems = scan_fsdd(root)
    return DatasetListing(recordings, list(FSDD_DIGITS), root, skipped=problems)
