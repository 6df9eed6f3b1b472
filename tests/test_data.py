"""Data: name parsing, splits, locating FSDD, the verified download (local HTTP server), class folders."""

import functools
import hashlib
import http.server
import io
import threading
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile

from scnn.data import fsdd as data
from scnn.data import (DownloadError, Recording, download_fsdd, list_class_folders, list_fsdd, load_manifest,
                       locate_fsdd, parse_fsdd_name, split_recordings, verify_recordings)


def write_wav(path: Path, seconds=0.1, frequency=300.0) -> bytes:
    t = np.arange(int(8000 * seconds)) / 8000
    soundfile.write(str(path), 0.2 * np.sin(2 * np.pi * frequency * t), 8000)
    return path.read_bytes()


def test_parse_names():
    assert parse_fsdd_name("x/7_theo_12.wav") == Recording(Path("x/7_theo_12.wav"), 7, "theo", 12, "train")
    assert parse_fsdd_name("x/7_theo_4.wav").official_part == "test"  # takes 0-4 are upstream's test set
    for bad in ("7-theo-12.wav", "a_theo_1.wav", "7_theo.wav", "12_theo_1.wav"):
        with pytest.raises(ValueError, match=bad):
            parse_fsdd_name(bad)


def test_listing_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="no .wav"):
        list_fsdd(tmp_path)
    write_wav(tmp_path / "1_ann_0.wav")
    (tmp_path / "notes.txt").write_text("ignored")
    assert [r.label for r in list_fsdd(tmp_path)] == [1]
    write_wav(tmp_path / "one_ann_0.wav")
    with pytest.raises(ValueError, match="one_ann_0.wav"):
        list_fsdd(tmp_path)


def fake_recordings(speakers=("ann", "bob", "cy"), takes=50):
    return [Recording(Path(f"{d}_{s}_{t}.wav"), d, s, t, "test" if t < 5 else "train")
            for d in range(10) for s in speakers for t in range(takes)]


def test_official_split_on_real_fsdd(fsdd_dir):
    recordings = list_fsdd(fsdd_dir)
    assert len(recordings) == 3000
    split = split_recordings(recordings, "official", val_fraction=0.1, seed=0)
    assert len(split.test) == 300 and len(split.train) + len(split.val) == 2700
    assert all(r.take < 5 for r in split.test) and all(r.take >= 5 for r in split.train + split.val)
    assert set(Counter(r.label for r in split.val).values()) == {27}, "validation stratified by digit"
    names = [{r.path for r in part} for part in (split.train, split.val, split.test)]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    again = split_recordings(list(reversed(recordings)), "official", val_fraction=0.1, seed=0)
    assert again == split, "independent of listing order"
    other = split_recordings(recordings, "official", val_fraction=0.1, seed=1)
    assert {r.path for r in other.val} != names[1]


def test_speaker_and_random_splits():
    recordings = fake_recordings()
    split = split_recordings(recordings, "speaker", holdout_speaker="bob", val_fraction=0.2)
    assert {r.speaker for r in split.test} == {"bob"} and "bob" not in {r.speaker for r in split.train + split.val}
    split = split_recordings(recordings, "random", test_fraction=0.1, val_fraction=0.1, seed=3)
    assert set(Counter(r.label for r in split.test).values()) == {15}
    assert len(split.train) + len(split.val) + len(split.test) == len(recordings)
    assert split_recordings(recordings, "random", seed=3) == split
    assert split_recordings(recordings, "official", val_fraction=0).val == []
    with pytest.raises(ValueError, match="known speakers: ann, bob, cy"):
        split_recordings(recordings, "speaker", holdout_speaker="zed")
    with pytest.raises(ValueError, match="unknown split"):
        split_recordings(recordings, "diagonal")


def test_locate_order_and_messages(tmp_path, monkeypatch):
    argument, environment, cache = tmp_path / "arg", tmp_path / "env", tmp_path / "cache"
    for folder in (argument, environment, cache / "scnn" / "fsdd" / "recordings"):
        folder.mkdir(parents=True)
        write_wav(folder / "0_ann_0.wav")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv(data.FSDD_ENV_VAR, str(environment))
    assert locate_fsdd(argument) == argument
    assert locate_fsdd() == environment
    monkeypatch.delenv(data.FSDD_ENV_VAR)
    assert locate_fsdd() == cache / "scnn" / "fsdd" / "recordings"
    repo_root = tmp_path / "repo"
    (repo_root / "recordings").mkdir(parents=True)
    write_wav(repo_root / "recordings" / "0_ann_0.wav")
    assert locate_fsdd(repo_root) == repo_root / "recordings"
    with pytest.raises(FileNotFoundError, match="nowhere.*--data-dir.*does not exist"):
        locate_fsdd(tmp_path / "nowhere")
    monkeypatch.setenv(data.FSDD_ENV_VAR, str(tmp_path / "also-nowhere"))
    with pytest.raises(FileNotFoundError, match=r"also-nowhere.*\$SCNN_DATA_DIR"):
        locate_fsdd()
    monkeypatch.delenv(data.FSDD_ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    with pytest.raises(FileNotFoundError, match="downloading is off"):
        locate_fsdd(download=False)


# --------------------------------------------------------------------------- download


def release_zip(files: dict[str, bytes], top="free-spoken-digit-dataset-1.0.10") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr(f"{top}/README.md", "FSDD")
        for name, content in files.items():
            bundle.writestr(f"{top}/recordings/{name}", content)
    return buffer.getvalue()


@pytest.fixture
def release(tmp_path):
    """Three tiny recordings, their manifest, and a local HTTP server on 127.0.0.1 serving tmp_path/site."""
    site = tmp_path / "site"
    site.mkdir()
    sources = tmp_path / "sources"
    sources.mkdir()
    files = {name: write_wav(sources / name, 0.05 * (i + 1), 200 + 50 * i)
             for i, name in enumerate(["0_ann_0.wav", "1_ann_0.wav", "2_bob_7.wav"])}
    manifest = {name: hashlib.sha256(content).hexdigest() for name, content in files.items()}
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"site": site, "files": files, "manifest": manifest, "url": f"http://127.0.0.1:{server.server_port}"}
    server.shutdown()
    server.server_close()


def assert_nothing_left(parent: Path, dest: Path):
    assert not dest.exists()
    assert list(parent.iterdir()) == [], f"leftovers: {list(parent.iterdir())}"


def test_download_verifies_and_moves_into_place(release, tmp_path):
    (release["site"] / "v1.0.10.zip").write_bytes(release_zip(release["files"]))
    dest = tmp_path / "cache" / "fsdd" / "recordings"
    assert download_fsdd(dest, url=f"{release['url']}/v1.0.10.zip", manifest=release["manifest"],
                         progress=False) == dest
    assert sorted(p.name for p in dest.iterdir()) == sorted(release["files"])
    assert [p.name for p in dest.parent.iterdir()] == ["recordings"], "no temporary folders left"


def test_download_through_locate_uses_the_cache(release, tmp_path, monkeypatch):
    (release["site"] / "v1.0.10.zip").write_bytes(release_zip(release["files"]))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(data.FSDD_ENV_VAR, raising=False)
    monkeypatch.setattr(data, "load_manifest", lambda path=None: release["manifest"])
    folder = locate_fsdd(url=f"{release['url']}/v1.0.10.zip")
    assert folder == tmp_path / "xdg" / "scnn" / "fsdd" / "recordings" and len(list(folder.glob("*.wav"))) == 3


def test_corrupted_archive_fails_clearly_and_leaves_nothing(release, tmp_path):
    corrupted = dict(release["files"])
    corrupted["1_ann_0.wav"] = corrupted["1_ann_0.wav"][:-10] + b"0123456789"
    (release["site"] / "bad.zip").write_bytes(release_zip(corrupted))
    parent = tmp_path / "cache"
    parent.mkdir()
    with pytest.raises(DownloadError, match=r"1 with wrong SHA-256 \(e.g. 1_ann_0.wav\)"):
        download_fsdd(parent / "recordings", url=f"{release['url']}/bad.zip", manifest=release["manifest"],
                      progress=False)
    assert_nothing_left(parent, parent / "recordings")


@pytest.mark.parametrize("body, message", [(b"<html>not a zip</html>", "not a valid zip"), (None, "HTTP Error 404")])
def test_bad_downloads_fail_clearly(release, tmp_path, body, message):
    if body is not None:
        (release["site"] / "page.zip").write_bytes(body)
    parent = tmp_path / "cache"
    parent.mkdir()
    with pytest.raises(DownloadError, match=message):
        download_fsdd(parent / "recordings", url=f"{release['url']}/page.zip", manifest=release["manifest"],
                      progress=False)
    assert_nothing_left(parent, parent / "recordings")


def test_missing_file_fails_verification(release, tmp_path):
    partial = dict(release["files"])
    del partial["2_bob_7.wav"]
    archive = tmp_path / "partial.zip"
    archive.write_bytes(release_zip(partial))
    parent = tmp_path / "cache"
    parent.mkdir()
    with pytest.raises(DownloadError, match="1 missing .*2_bob_7.wav"):
        download_fsdd(parent / "recordings", url=archive.as_uri(), manifest=release["manifest"], progress=False)
    assert_nothing_left(parent, parent / "recordings")


def test_file_url_download(release, tmp_path):
    archive = tmp_path / "release.zip"
    archive.write_bytes(release_zip(release["files"]))
    dest = tmp_path / "out" / "recordings"
    download_fsdd(dest, url=archive.as_uri(), manifest=release["manifest"], progress=False)
    verify_recordings(dest, release["manifest"])


def test_packaged_manifest_matches_the_real_folder(fsdd_dir):
    manifest = load_manifest()
    assert len(manifest) == 3000
    verify_recordings(fsdd_dir, manifest)


def test_class_folders(tmp_path):
    for label in ("yes", "no", "_background_noise_"):
        (tmp_path / label).mkdir()
    write_wav(tmp_path / "yes" / "abc123_nohash_0.wav")
    write_wav(tmp_path / "yes" / "abc124_nohash_0.wav")
    write_wav(tmp_path / "no" / "abc123_nohash_1.wav")
    write_wav(tmp_path / "_background_noise_" / "noise.wav")
    recordings, names = list_class_folders(tmp_path)
    assert names == ["no", "yes"]
    assert [(r.label, r.speaker) for r in recordings] == [(0, "abc123"), (1, "abc123"), (1, "abc124")]
    with pytest.raises(FileNotFoundError, match="missing"):
        list_class_folders(tmp_path / "missing")
    with pytest.raises(ValueError, match="no class subfolders"):
        list_class_folders(tmp_path / "no")
