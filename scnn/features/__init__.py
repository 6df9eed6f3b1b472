"""Front ends (MFCC, raw waveform), feature caching, normalisation, augmentation."""

from scnn.features.augment import augment_batch
from scnn.features.mfcc import (FEATURE_PRESETS, AudioFileError, FeatureConfig, FeatureSet, cache_key,
                                content_digest, extract_features, feature_config, file_to_mfcc, load_audio,
                                normalize_level, waveform_to_mfcc)
from scnn.features.normalize import Normalizer
