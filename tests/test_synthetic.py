"""Extra training recordings (data.extra_train) and synthetic voices (scnn.data.synthetic): the extra
recordings join the training split only, bad manifests are named, and the synthesiser's output is
written at the dataset's rate with a manifest the training reads."""

import shutil

import numpy as np
import pytest
import soundfile

from scnn.data import DATASETS, DatasetListing, Recording, register_dataset
from scnn.data.fixtures import write_tone
from scnn.data.prepare import DataConfig, prepare_data
from scnn.data.synthetic import ACCENTS, VARIANTS, Voice, draw_voices, espeak, parse_words, synthesize

PITCH = {"0": 300.0, "1": 900.0}


@pytest.fixture
def tones(tmp_path):
    """Two classes of tones by three speakers, 3 takes each."""
    folder = tmp_path / "tones"
    recordings = []
    for label, frequency in enumerate(PITCH.values()):
        for number, speaker in enumerate(("ann", "bob", "cy")):
            for take in range(3):
                path = write_tone(folder / f"{label}_{speaker}_{take}.wav", frequency * (1 + 0.02 * number), take)
                recordings.append(Recording(path, label, speaker, take))

    @register_dataset("extra_tones")
    def listing(config) -> DatasetListing:
        return DatasetListing(list(recordings), list(PITCH), folder)

    yield "extra_tones"
    DATASETS.pop("extra_tones")


def fake_speaker(word: str, voice: Voice) -> tuple[np.ndarray, int]:
    """A 'synthesiser' at 22,050 Hz: a tone whose pitch says the word and the voice."""
    rate = 22050
    t = np.arange(int(0.4 * rate)) / rate
    frequency = {"low": 300.0, "high": 900.0}[word] * (1 + voice.pitch / 1000)
    return (0.2 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), rate


def test_voices_are_seeded_and_within_their_ranges():
    voices = draw_voices(50, seed=3)
    assert voices == draw_voices(50, seed=3) and voices != draw_voices(50, seed=4)
    assert len({voice.name for voice in voices}) == 50
    for voice in voices:
        assert voice.accent in ACCENTS and voice.variant in VARIANTS
        assert 20 <= voice.pitch <= 80 and 110 <= voice.speed <= 200
    assert voices[0].arguments() == ["-v", f"{voices[0].accent}+{voices[0].variant}", "-p", str(voices[0].pitch),
                                     "-s", str(voices[0].speed)]
    with pytest.raises(ValueError, match="voices must be at least 1"):
        draw_voices(0, 0)
    assert parse_words(None)["7"] == "seven" and parse_words("a=yes, b=no") == {"a": "yes", "b": "no"}
    with pytest.raises(ValueError, match="'a' is not LABEL=WORD"):
        parse_words("a")


def test_synthesized_recordings_join_the_training_split_only(tmp_path, tones):
    voices = draw_voices(4, seed=0)
    manifest = synthesize(tmp_path / "synth", voices, {"0": "low", "1": "high"}, sample_rate=8000, speak=fake_speaker)
    audio, rate = soundfile.read(tmp_path / "synth" / f"1_{voices[2].name}_0.wav")
    assert rate == 8000 and audio.size == int(0.4 * 8000) and np.abs(audio).max() == pytest.approx(0.5, abs=1e-3)
    assert len(manifest.read_text().splitlines()) == 1 + 4 * 2

    base = dict(dataset=tones, split="speaker", holdout_speaker="cy", val_speakers="bob", cache_dir=str(tmp_path / "c"))
    plain = prepare_data(DataConfig(**base), progress=False)
    extra = prepare_data(DataConfig(**base, extra_train=str(manifest)), progress=False, keep_waveforms=True)
    assert len(plain.train[1]) == 6 and len(extra.train[1]) == 6 + 8
    # validation and test: the same real recordings (their features normalised by the new training statistics)
    assert extra.val_files == plain.val_files and len(plain.val_files) == 6 and extra.test_files == plain.test_files
    assert (extra.val[1] == plain.val[1]).all() and (extra.test[1] == plain.test[1]).all()
    assert sum(1 for path in extra.train_files if "/synth/" in path) == 8 and len(extra.train_waveforms) == 14
    assert sorted(extra.train[1].tolist()) == sorted(plain.train[1].tolist() + [0] * 4 + [1] * 4)


def test_bad_extra_manifests_are_named(tmp_path, tones):
    manifest = tmp_path / "extra.csv"
    write_tone(tmp_path / "a.wav", 300.0)
    manifest.write_text("path,label\na.wav,0\nb.wav,1\na.wav,seven\n")
    config = DataConfig(dataset=tones, split="speaker", holdout_speaker="cy", cache_dir=str(tmp_path / "c"),
                        extra_train=str(manifest))
    with pytest.raises(ValueError, match=r"data.extra_train .*extra.csv: cannot use 2 files: .*a.wav: label 'seven' "
                                         r"is not one of the classes 0, 1; .*b.wav: listed in manifest .*extra.csv "
                                         r"but missing"):
        prepare_data(config, progress=False)
    manifest.write_text("path,speaker\na.wav,x\n")
    with pytest.raises(ValueError, match="missing column label"):
        prepare_data(config, progress=False)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt-get install espeak-ng)")
def test_espeak_speaks_a_digit():
    audio, rate = espeak("seven", Voice("v", "en-us", "m3", 50, 150))
    assert rate == 22050 and 0.3 < audio.size / rate < 2.0 and np.abs(audio).max() > 0.05
    with pytest.raises(RuntimeError, match="espeak-ng .* failed"):
        espeak("seven", Voice("v", "xx-nowhere", "m3", 50, 150))
