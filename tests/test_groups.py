"""Group-aware splits: where the speaker comes from (metadata, a file-name pattern, a CSV manifest),
group-disjoint train / validation / test for every split kind, and the folds of cross-validation."""

from collections import Counter
from pathlib import Path

import pytest

from scnn.data import DataConfig, Recording
from scnn.data.splits import assign_groups, group_folds, split_recordings

SPEAKERS = ("ann", "bob", "cy", "dee", "eve", "fay")


def recordings(speakers=SPEAKERS, takes=10, speaker=True):
    return [Recording(Path(f"/d/{d}_{s}_{t}.wav"), d, s if speaker else None, t, "test" if t < 2 else "train")
            for d in range(3) for s in speakers for t in range(takes)]


def speakers(part):
    return {r.speaker for r in part}


def assert_disjoint(split, total):
    assert len(split.train) + len(split.val) + len(split.test) == total
    paths = [{r.path for r in part} for part in (split.train, split.val, split.test)]
    assert not (paths[0] & paths[1] or paths[0] & paths[2] or paths[1] & paths[2])


@pytest.mark.parametrize("kind, options", [
    ("speaker", {"holdout_speaker": "bob"}),
    ("speaker", {"holdout_speaker": "bob,eve"}),
    ("group", {"test_fraction": 0.34}),
    ("random", {}),
    ("official", {}),
])
def test_validation_speakers_are_disjoint_from_train_and_test_in_every_split(kind, options):
    listed = recordings()
    for validation in ({"val_speakers": "ann"}, {"num_val_speakers": 2}):
        split = split_recordings(listed, kind, seed=4, **options, **validation)
        assert_disjoint(split, len(listed))
        assert not speakers(split.val) & speakers(split.train), "validation voices never trained on"
        if kind in ("speaker", "group"):
            assert not speakers(split.test) & (speakers(split.train) | speakers(split.val))
        wanted = 1 if "val_speakers" in validation else 2
        assert len(speakers(split.val)) == wanted
    assert split_recordings(listed, kind, seed=4, num_val_speakers=2, **options) == \
        split_recordings(list(reversed(listed)), kind, seed=4, num_val_speakers=2, **options), "seeded, order-free"


def test_group_split_holds_out_a_seeded_share_of_speakers():
    listed = recordings()
    split = split_recordings(listed, "group", test_fraction=0.34, seed=0)
    assert len(speakers(split.test)) == 2 and not speakers(split.test) & speakers(split.train + split.val)
    others = {frozenset(speakers(split_recordings(listed, "group", test_fraction=0.34, seed=s).test)) for s in range(8)}
    assert len(others) > 1, "the seed chooses the test speakers"
    # without validation speakers, validation is carved out of the training speakers (as before)
    assert speakers(split.val) <= speakers(split.train)
    assert len(speakers(split_recordings(listed, "group", test_fraction=0.01).test)) == 1, "at least one"


def test_official_split_is_unchanged_by_default():
    listed = recordings()
    split = split_recordings(listed, "official", seed=0)
    assert {r.take for r in split.test} == {0, 1} and all(r.take >= 2 for r in split.train + split.val)
    assert set(Counter(r.label for r in split.val).values()) == {round(0.1 * 48)}


def test_split_errors_name_the_problem():
    listed = recordings()
    with pytest.raises(ValueError, match="unknown speaker 'zed' in holdout_speaker; known speakers: ann, bob"):
        split_recordings(listed, "speaker", holdout_speaker="bob,zed")
    with pytest.raises(ValueError, match="unknown speaker 'zed' in val_speakers"):
        split_recordings(listed, "speaker", holdout_speaker="bob", val_speakers="zed")
    with pytest.raises(ValueError, match="val_speakers bob are test speakers"):
        split_recordings(listed, "speaker", holdout_speaker="bob", val_speakers="bob")
    with pytest.raises(ValueError, match="num_val_speakers 5 leaves no training speaker"):
        split_recordings(listed, "speaker", holdout_speaker="bob", num_val_speakers=5)
    with pytest.raises(ValueError, match="not both"):
        split_recordings(listed, "random", val_speakers="ann", num_val_speakers=1)
    with pytest.raises(ValueError, match=r"needs every recording's speaker; 180 files: /d/0_ann_0.wav"):
        split_recordings(recordings(speaker=False), "group")
    with pytest.raises(ValueError, match="leaves no speaker for training"):
        split_recordings(listed, "speaker", holdout_speaker=",".join(SPEAKERS))


def test_group_pattern_sets_the_speaker_and_names_files_it_does_not_match():
    listed = [Recording(Path(f"/d/{name}"), 0) for name in ("ann_1.wav", "bob_22.wav", "Cy-3.wav", "x.wav")]
    with pytest.raises(ValueError, match=r"2 files: /d/Cy-3.wav: file name does not match data.group_pattern"
                                         r".*/d/x.wav"):
        assign_groups(listed, pattern=r"(?P<group>[a-z]+)_\d+\.wav")
    grouped = assign_groups(listed[:2], pattern=r"(?P<group>[a-z]+)_\d+\.wav")
    assert [r.speaker for r in grouped] == ["ann", "bob"]
    with pytest.raises(ValueError, match="no named group"):
        assign_groups(listed, pattern=r"[a-z]+_\d+\.wav")
    with pytest.raises(ValueError, match="not a regular expression"):
        DataConfig(group_pattern="(?P<group>[a-z")
    with pytest.raises(ValueError, match="exclude each other"):
        DataConfig(val_speakers="ann", num_val_speakers=1)


def test_group_manifest_sets_the_speaker_and_names_unlisted_files(tmp_path):
    (tmp_path / "groups.csv").write_text("path,label,speaker\na/1.wav,one,ann\nb/2.wav,two,\n")
    listed = [Recording(tmp_path / "a" / "1.wav", 0), Recording(tmp_path / "b" / "2.wav", 1),
              Recording(tmp_path / "c.wav", 1)]
    with pytest.raises(ValueError, match=r"2 files: .*b/2.wav: no speaker in manifest.*c.wav: not listed"):
        assign_groups(listed, manifest=tmp_path / "groups.csv")
    assert assign_groups(listed[:1], manifest=tmp_path / "groups.csv")[0].speaker == "ann"
    (tmp_path / "bad.csv").write_text("file,speaker\na/1.wav,ann\n")
    with pytest.raises(ValueError, match="missing column path"):
        assign_groups(listed, manifest=tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        assign_groups(listed, manifest=tmp_path / "missing.csv")


def test_folds_cover_every_speaker_once():
    folds = group_folds(list(SPEAKERS), 4, seed=1)
    assert sorted(s for fold in folds for s in fold) == sorted(SPEAKERS)
    assert sorted(len(fold) for fold in folds) == [1, 1, 2, 2]
    assert group_folds(list(SPEAKERS), 4, seed=1) == folds and group_folds(list(SPEAKERS), 4, seed=2) != folds
    assert group_folds(list(SPEAKERS), None) == [[s] for s in sorted(SPEAKERS)]
    with pytest.raises(ValueError, match="7 folds but only 6 speakers .* a fold would have no speakers"):
        group_folds(list(SPEAKERS), 7)
    with pytest.raises(ValueError, match="at least 2 folds"):
        group_folds(list(SPEAKERS), 1)
