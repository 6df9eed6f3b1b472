"""The Heidelberg spiking data sets (Cramer et al. 2020): SHD (20 spoken digits, English and German) and
SSC (the 35 Speech Commands words), spike trains of 700 cochlea-model channels in HDF5 files.

Each file holds N samples::

    spikes/times    [N] variable-length float16 arrays: spike times in seconds
    spikes/units    [N] variable-length uint16 arrays: the channel (0..699) of each spike
    labels          [N] uint16 class indices
    extra/keys      class names (bytes), index = label                     (where given)
    extra/speaker   [N] uint16 speaker IDs                                 (where given)

Official parts: ``shd_train.h5`` / ``shd_test.h5``; ``ssc_train.h5`` / ``ssc_valid.h5`` / ``ssc_test.h5``.
SHD has no validation file: with ``split="official"`` :func:`scnn.data.splits.split_recordings` carves a
stratified ``val_fraction`` of the training file out (seeded by ``split_seed``), as for FSDD; the README
says why. The features are spike counts ``[num_rows, num_frames]`` (:func:`bin_events`, feature preset
"events"); :func:`augment_events` jitters channels and times and drops events, seeded.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scnn.data.registry import DatasetListing, Recording, register_dataset
from scnn.features.mfcc import FeatureConfig, FeatureSet
from scnn.io import describe_problems

NUM_CHANNELS = 700
FILES = {
    "shd": {"train": "shd_train.h5", "test": "shd_test.h5"},
    "ssc": {"train": "ssc_train.h5", "val": "ssc_valid.h5", "test": "ssc_test.h5"},
}
ENV_VARS = {"shd": "SCNN_SHD_DIR", "ssc": "SCNN_SSC_DIR"}
BASE_URL = "https://zenkelab.org/datasets"  # the authors' host of <file>.h5.gz
# No SHA-256 is pinned for these: the files could not be fetched here to measure them, and the copies
# quoted in other projects disagree. The authors publish MD5 sums (md5sums.txt beside the files):
# download_heidelberg() checks each file against a SHA-256 the caller gives, else against that list.
SHA256: dict[str, str] = {}
MD5_LIST = "md5sums.txt"
REQUIRED_KEYS = ("spikes/times", "spikes/units", "labels")


@dataclass
class EventFile:
    """One HDF5 file read into memory: per sample ``times[i]`` (float32 seconds) and ``units[i]`` (int64
    channels) of equal length, ``labels`` [N] int64, ``speakers`` [N] int64 or None, ``keys`` class names
    or None."""

    path: Path
    times: list[np.ndarray]
    units: list[np.ndarray]
    labels: np.ndarray
    speakers: np.ndarray | None
    keys: list[str] | None


def read_event_file(path: str | Path) -> EventFile:
    """Read and check one SHD/SSC file; every problem (missing key, length mismatch, a channel outside
    0..699, a negative or non-finite time) is named in one ValueError with the file and sample index."""
    import h5py

    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path}: not a readable HDF5 file ({error})") from error
    with handle:
        missing = [key for key in REQUIRED_KEYS if key not in handle]
        if missing:
            raise ValueError(f"{path}: lacks {', '.join(missing)} (an SHD/SSC file has {', '.join(REQUIRED_KEYS)})")
        times = [np.asarray(t, dtype=np.float32) for t in handle["spikes/times"][:]]
        units = [np.asarray(u, dtype=np.int64) for u in handle["spikes/units"][:]]
        labels = np.asarray(handle["labels"][:], dtype=np.int64)
        speakers = np.asarray(handle["extra/speaker"][:], dtype=np.int64) if "extra/speaker" in handle else None
        keys = ([k.decode() if isinstance(k, bytes) else str(k) for k in handle["extra/keys"][:]]
                if "extra/keys" in handle else None)
    problems = []
    if not len(times) == len(units) == len(labels) or (speakers is not None and len(speakers) != len(labels)):
        raise ValueError(f"{path}: {len(times)} spike times, {len(units)} unit arrays, {len(labels)} labels"
                         + (f", {len(speakers)} speakers" if speakers is not None else "") + ": they must agree")
    for index, (t, u) in enumerate(zip(times, units)):
        if len(t) != len(u):
            problems.append((f"sample {index}", f"{len(t)} times but {len(u)} units"))
        elif len(u) and (u.min() < 0 or u.max() >= NUM_CHANNELS):
            problems.append((f"sample {index}", f"channel {int(u.min() if u.min() < 0 else u.max())} "
                                                f"outside 0..{NUM_CHANNELS - 1}"))
        elif len(t) and (not np.all(np.isfinite(t)) or t.min() < 0):
            problems.append((f"sample {index}", "negative or non-finite spike time"))
    if problems:
        raise ValueError(f"{path}: {describe_problems(problems).replace(' files: ', ' samples: ', 1)}")
    return EventFile(path, times, units, labels, speakers, keys)


def bin_events(times: np.ndarray, units: np.ndarray, time_step: float, num_steps: int,
               num_rows: int = NUM_CHANNELS) -> np.ndarray:
    """Spike counts ``[num_rows, num_steps]`` float32 of one sample.

    times: [E] seconds; units: [E] channels 0..699; time_step: frame width in seconds; frame k counts
    spikes with ``k * time_step <= t < (k + 1) * time_step``; spikes at or after ``num_steps * time_step``
    are left out. num_rows must divide 700: row r sums channels ``r * 700 / num_rows`` onwards.
    Every spike inside the window is counted exactly once.
    """
    if NUM_CHANNELS % num_rows:
        raise ValueError(f"num_rows must divide {NUM_CHANNELS} channels, got {num_rows}")
    if time_step <= 0 or num_steps <= 0:
        raise ValueError(f"time_step and num_steps must be positive, got {time_step} and {num_steps}")
    # float64 so that a spike exactly on a frame edge falls in the later frame, whatever the input dtype.
    frames = np.floor(np.asarray(times, dtype=np.float64) / time_step).astype(np.int64)
    inside = (frames >= 0) & (frames < num_steps)
    counts = np.zeros((num_rows, num_steps), np.float32)
    rows = np.asarray(units, dtype=np.int64)[inside] // (NUM_CHANNELS // num_rows)
    np.add.at(counts, (rows, frames[inside]), 1.0)
    return counts


def augment_events(times: np.ndarray, units: np.ndarray, generator: np.random.Generator,
                   channel_jitter: float = 0.0, time_jitter: float = 0.0, drop: float = 0.0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """A perturbed copy of one sample's events (times in seconds, units channels), drawn from ``generator``.

    channel_jitter: each spike's channel moves by round(N(0, channel_jitter)); spikes pushed outside
    0..699 are dropped (Cramer et al.'s and Nowotny et al.'s "ID jitter"). time_jitter: each spike time
    moves by N(0, time_jitter) seconds, clipped at 0. drop: each spike is removed with this probability.
    """
    if not 0.0 <= drop < 1.0 or channel_jitter < 0 or time_jitter < 0:
        raise ValueError(f"need 0 <= drop < 1 and non-negative jitters; got drop={drop}, "
                         f"channel_jitter={channel_jitter}, time_jitter={time_jitter}")
    times = np.asarray(times, dtype=np.float32).copy()
    units = np.asarray(units, dtype=np.int64).copy()
    keep = np.ones(len(times), bool)
    if drop:
        keep &= generator.random(len(times)) >= drop
    if channel_jitter:
        units = units + np.rint(generator.normal(0.0, channel_jitter, len(units))).astype(np.int64)
        keep &= (units >= 0) & (units < NUM_CHANNELS)
    if time_jitter:
        times = np.maximum(times + generator.normal(0.0, time_jitter, len(times)).astype(np.float32), 0.0)
    return times[keep], units[keep]


def sample_digest(times: np.ndarray, units: np.ndarray, label: int) -> str:
    """SHA-256 of one sample's events and label (what a checkpoint records of its test set)."""
    digest = hashlib.sha256(np.asarray(times, np.float32).tobytes())
    digest.update(np.asarray(units, np.int64).tobytes())
    digest.update(str(int(label)).encode())
    return digest.hexdigest()


def locate_event_files(name: str, data_dir: str | Path | None) -> dict[str, Path]:
    """The official files of ``name`` ("shd" or "ssc") in ``data_dir`` / ``$SCNN_SHD_DIR`` / ``$SCNN_SSC_DIR``,
    by part; a missing folder or file raises FileNotFoundError naming every missing one."""
    where = data_dir or os.environ.get(ENV_VARS[name])
    if not where:
        raise FileNotFoundError(f"{name.upper()} needs --data-dir (or ${ENV_VARS[name]}) pointing at the folder "
                                f"of {', '.join(FILES[name].values())} (gunzipped from {BASE_URL}/<file>.gz, "
                                "or fetched with scnn.data.heidelberg.download_heidelberg)")
    root = Path(where)
    missing = [file for file in FILES[name].values() if not (root / file).is_file()]
    if missing:
        raise FileNotFoundError(f"{name.upper()} folder {root} lacks {', '.join(missing)}")
    return {part: root / file for part, file in FILES[name].items()}


def download_heidelberg(name: str, dest: str | Path, sha256: dict[str, str] | None = None, base_url: str = BASE_URL,
                        progress: bool = True) -> dict[str, Path]:
    """Fetch ``<base_url>/<file>.h5.gz`` for every official file of ``name`` into ``dest`` (SHA-256 of each
    .gz checked against ``sha256[file + ".gz"]``, resumed after an interruption), gunzip each to a
    temporary name and rename it into place, delete the .gz. Returns the .h5 paths by part.

    sha256: digests of the .gz files (default :data:`SHA256`, empty: none is pinned yet). A file without
    one is checked against the MD5 the authors publish in ``<base_url>/md5sums.txt`` ("<md5>  <file>"
    lines); a file in neither is an error naming it, since an unchecked download is what this module
    exists to avoid.
    """
    import gzip
    import shutil

    from scnn.data.download import download_file
    from scnn.io import atomic_write

    digests = {**SHA256, **(sha256 or {})}
    dest = Path(dest)
    unpinned = [f"{file}.gz" for file in FILES[name].values()
                if f"{file}.gz" not in digests and not (dest / file).is_file()]
    md5 = _published_md5(base_url, dest) if unpinned else {}
    unchecked = [file for file in unpinned if file not in md5]
    if unchecked:
        raise ValueError(f"no SHA-256 known for {', '.join(unchecked)} and not listed in {base_url}/{MD5_LIST}: "
                         "pass sha256={file: digest} (measure a copy you trust with scnn.data.download.sha256_of), "
                         f"or download them from {base_url} yourself and pass --data-dir")
    written = {}
    for part, file in FILES[name].items():
        target = dest / file
        if not target.is_file():
            archive = download_file(f"{base_url}/{file}.gz", dest / f"{file}.gz", digests.get(f"{file}.gz"),
                                    what=f"{name.upper()} {file}", progress=progress,
                                    md5=None if f"{file}.gz" in digests else md5[f"{file}.gz"])
            with gzip.open(archive, "rb") as source:
                atomic_write(target, lambda handle: shutil.copyfileobj(source, handle, 1 << 20))
            archive.unlink()
        written[part] = target
    return written


def _published_md5(base_url: str, dest: Path) -> dict[str, str]:
    """{file name: MD5} from the authors' ``md5sums.txt`` ({} where the host has none)."""
    from scnn.data.download import DownloadError, download_file

    listing = dest / f".{MD5_LIST}"
    try:
        download_file(f"{base_url}/{MD5_LIST}", listing, None, what=MD5_LIST, progress=False)
    except DownloadError:
        return {}
    try:
        sums = {}
        for line in listing.read_text().splitlines():
            fields = line.split()
            if len(fields) == 2 and len(fields[0]) == 32:
                sums[fields[1].lstrip("*").split("/")[-1]] = fields[0].lower()
        return sums
    finally:
        listing.unlink(missing_ok=True)


def event_listing(name: str, config) -> DatasetListing:
    """Every sample of the official files as a :class:`Recording` (path = its file, index = its row)."""
    files = locate_event_files(name, config.data_dir)
    loaded = {part: read_event_file(path) for part, path in files.items()}
    recordings = []
    for part, events in loaded.items():
        for index, label in enumerate(events.labels):
            speaker = None if events.speakers is None else str(int(events.speakers[index]))
            recordings.append(Recording(events.path, int(label), speaker, None, part, index))
    num_classes = max(int(events.labels.max(initial=-1)) for events in loaded.values()) + 1
    keys = next((events.keys for events in loaded.values() if events.keys), None)
    class_names = list(keys) if keys and len(keys) >= num_classes else [str(i) for i in range(num_classes)]
    by_path = {events.path: events for events in loaded.values()}

    def extract(chosen: list[Recording], features: FeatureConfig) -> FeatureSet:
        if features.representation != "events":
            raise ValueError(f"dataset {name!r} holds spike events: use feature_preset 'events' "
                             f"(got representation {features.representation!r})")
        time_step = features.hop_length / features.sample_rate
        rows = np.zeros((len(chosen), *features.shape), np.float32)
        digests = {}
        for row, recording in enumerate(chosen):
            events = by_path[recording.path]
            t, u = events.times[recording.index], events.units[recording.index]
            rows[row] = bin_events(t, u, time_step, features.num_frames, features.num_rows)
            digests[recording.key] = sample_digest(t, u, recording.label)
        return FeatureSet(rows, [r.key for r in chosen], digests=digests)

    return DatasetListing(recordings, class_names, Path(files["train"]).parent, extract=extract)


@register_dataset("shd")
def shd_listing(config) -> DatasetListing:
    """Spiking Heidelberg Digits: 20 classes; validation carved from the training file (no official one)."""
    return event_listing("shd", config)


@register_dataset("ssc")
def ssc_listing(config) -> DatasetListing:
    """Spiking Speech Commands: 35 classes; the official train / valid / test files."""
    return event_listing("ssc", config)


def event_batches(data, config):
    """The training batches of a spike-event dataset, augmented as events: a function
    ``(index [B] long tensor, generator torch.Generator) -> features [B, 1, rows, frames]`` float32 (CPU).

    data: :class:`scnn.data.prepare.PreparedData` of an "events" feature config, whose ``train_files``
    name each training row's sample (``<file>#<row>``); config: a TrainConfig with ``event_channel_jitter``,
    ``event_time_jitter`` and ``event_drop`` (:func:`augment_events`). Each call draws one seed from
    ``generator`` (the loop's augmentation generator, seeded by ``train.seed`` and saved in checkpoints),
    so the augmentation is the same for the same seed, differs from epoch to epoch, and a resumed run
    continues it. The rows are binned as the features were (:func:`bin_events`) and normalised with
    ``data.normalizer``; only the training loop calls this, so validation and test samples are never
    augmented.
    """
    import torch

    features = data.feature_config
    if features.representation != "events":
        raise ValueError("train.event_channel_jitter / event_time_jitter / event_drop augment spike events: they "
                         f"need an events dataset (shd, ssc) and feature preset 'events', not representation "
                         f"{features.representation!r}")
    if len(data.train_files) != len(data.train[1]):
        raise ValueError(f"event augmentation needs the sample of each training row: {len(data.train_files)} "
                         f"names for {len(data.train[1])} rows (prepare the data with scnn.data.prepare_data)")
    samples = [key.rsplit("#", 1) for key in data.train_files]
    bad = [key for key, parts in zip(data.train_files, samples) if len(parts) != 2 or not parts[1].isdigit()]
    if bad:
        raise ValueError(f"event augmentation: training rows not named <file>#<row>: {', '.join(bad[:3])}")
    files = {path: read_event_file(path) for path in sorted({path for path, _ in samples})}
    events = [(files[path].times[int(row)], files[path].units[int(row)]) for path, row in samples]
    time_step = features.hop_length / features.sample_rate
    options = {"channel_jitter": config.event_channel_jitter, "time_jitter": config.event_time_jitter,
               "drop": config.event_drop}
    normalizer = data.normalizer

    def batch(index, generator):
        rng = np.random.default_rng(int(torch.randint(0, 2 ** 62, (1,), generator=generator)))
        rows = np.stack([bin_events(*augment_events(*events[int(i)], rng, **options), time_step,
                                    features.num_frames, features.num_rows) for i in index])
        return torch.from_numpy(normalizer(rows)).unsqueeze(1)

    return batch
