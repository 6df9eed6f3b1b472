"""Datasets by name, their splits, and the preparation of features from a data config."""

from scnn.data import fsdd as _fsdd, folders as _folders, heidelberg as _heidelberg  # noqa: F401  (register the datasets)
from scnn.data import recordings as _recordings, speech_commands as _speech_commands  # noqa: F401
from scnn.data.folders import list_class_folders, scan_class_folders
from scnn.data.fsdd import (FSDD_DIGITS, FSDD_ENV_VAR, FSDD_PATTERN, FSDD_RELEASE_TAG, FSDD_URL, DownloadError,
                            download_fsdd, list_fsdd, load_manifest, locate_fsdd, parse_fsdd_name, scan_fsdd,
                            sha256_of, verify_recordings)
from scnn.data.prepare import DataConfig, PreparedData, checkpoint_data, prepare_data
from scnn.data.registry import (DATASETS, DatasetListing, Recording, dataset_listing, default_cache_dir,
                                list_datasets, register_dataset)
from scnn.data.splits import SPLITS, Split, split_recordings
