"""scnn.data.download (pooch underneath) against a local HTTP server that honours Range requests."""

import functools
import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import pytest

from scnn.data import speech_commands
from scnn.data.download import DownloadError, download_file, unpack_tar
from scnn.data.fixtures import write_speech_commands_tree


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files, and ``Range: bytes=N-`` with 206 and the rest; records every request's Range header."""

    requests_seen: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        self.requests_seen.append((self.path, self.headers.get("Range")))
        if not path.is_file():
            self.send_error(404, "File not found")
            return
        body = path.read_bytes()
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        if start >= len(body) and start:
            self.send_response(416)
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])


@pytest.fixture
def server(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    RangeHandler.requests_seen = []
    handler = functools.partial(RangeHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield site, f"http://127.0.0.1:{httpd.server_port}", RangeHandler.requests_seen
    httpd.shutdown()
    httpd.server_close()


def test_download_checks_sha256_and_leaves_nothing_on_mismatch(server, tmp_path):
    site, url, _ = server
    payload = bytes(range(256)) * 400
    (site / "blob.bin").write_bytes(payload)
    good = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "out" / "blob.bin"
    assert download_file(f"{url}/blob.bin", dest, good, progress=False).read_bytes() == payload
    bad_dest = tmp_path / "bad" / "blob.bin"
    with pytest.raises(DownloadError, match=f"blob.bin from {url}/blob.bin failed its SHA-256 check"):
        download_file(f"{url}/blob.bin", bad_dest, "0" * 64, progress=False)
    assert list((tmp_path / "bad").iterdir()) == []
    with pytest.raises(DownloadError, match=r"HTTP Error 404"):
        download_file(f"{url}/missing.bin", tmp_path / "x" / "missing.bin", None, progress=False)
    assert list((tmp_path / "x").iterdir()) == []


def test_interrupted_download_resumes_from_the_partial_file(server, tmp_path):
    site, url, seen = server
    payload = bytes(range(256)) * 400
    (site / "blob.bin").write_bytes(payload)
    dest = tmp_path / "out" / "blob.bin"
    dest.parent.mkdir()
    (dest.parent / "blob.bin.part").write_bytes(payload[:30000])  # what an interrupted run left
    download_file(f"{url}/blob.bin", dest, hashlib.sha256(payload).hexdigest(), progress=False)
    assert dest.read_bytes() == payload and seen == [("/blob.bin", "bytes=30000-")]
    assert sorted(p.name for p in dest.parent.iterdir()) == ["blob.bin"]
    # Already there with the right digest: no request at all.
    download_file(f"{url}/blob.bin", dest, hashlib.sha256(payload).hexdigest(), progress=False)
    assert len(seen) == 1
    # A partial file with wrong bytes fails the check and is removed, so the next call starts afresh.
    other = tmp_path / "other" / "blob.bin"
    other.parent.mkdir()
    (other.parent / "blob.bin.part").write_bytes(b"x" * 30000)
    with pytest.raises(DownloadError, match="SHA-256"):
        download_file(f"{url}/blob.bin", other, hashlib.sha256(payload).hexdigest(), progress=False)
    assert list(other.parent.iterdir()) == []
    download_file(f"{url}/blob.bin", other, hashlib.sha256(payload).hexdigest(), progress=False)
    assert other.read_bytes() == payload and seen[-1] == ("/blob.bin", None)


def test_speech_commands_downloads_into_the_cache_and_is_listed(server, tmp_path, monkeypatch):
    site, url, _ = server
    tree = tmp_path / "tree"
    write_speech_commands_tree(tree, {"train": 1, "val": 1, "test": 1}, seconds=0.02, noise_seconds=1.1)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
        for path in sorted(tree.iterdir()):  # the release's archive has no top folder
            bundle.add(path, arcname=path.name)
    (site / "sc.tar.gz").write_bytes(buffer.getvalue())
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(speech_commands.SPEECH_COMMANDS_ENV_VAR, raising=False)
    with pytest.raises(DownloadError, match=r"failed its SHA-256 check.*; to use a copy you already have, pass "
                                            r"--data-dir DIR .* or set SCNN_SPEECH_COMMANDS_DIR=DIR"):
        speech_commands.locate_speech_commands(url=f"{url}/sc.tar.gz", sha256="1" * 64, progress=False)
    cache = tmp_path / "xdg" / "scnn"
    assert list(cache.iterdir()) == []
    root = speech_commands.locate_speech_commands(url=f"{url}/sc.tar.gz", sha256=digest, progress=False)
    assert root == cache / "speech_commands_v0.02" and sorted(p.name for p in cache.iterdir()) == [root.name]
    recordings, skipped = speech_commands.scan_speech_commands(root)
    assert len(recordings) == 35 * 3 and skipped == []
    # The offline path: a folder the user already has is used as it is, nothing is fetched.
    assert speech_commands.locate_speech_commands(tree, url="http://127.0.0.1:9/") == tree


def test_unpack_refuses_members_outside_the_folder(tmp_path):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as bundle:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        bundle.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(DownloadError, match="cannot unpack evil from"):
        unpack_tar(archive, tmp_path / "out", "evil")
    assert not (tmp_path / "out").exists() and not (tmp_path / "escaped.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o027, 0o750)])
def test_unpacked_folder_gets_the_umask_permissions(tmp_path, umask, mode):
    """Not tempfile.mkdtemp's 0o700: collaborators read a downloaded data set as any other folder."""
    import os
    import stat

    archive = tmp_path / "data.tar"
    with tarfile.open(archive, "w") as bundle:
        info = tarfile.TarInfo("a.wav")
        info.size = 1
        bundle.addfile(info, io.BytesIO(b"x"))
    previous = os.umask(umask)
    try:
        dest = unpack_tar(archive, tmp_path / "data", "data")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(dest.stat().st_mode) == mode and (dest / "a.wav").read_bytes() == b"x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "data.tar"]  # no staging folder left


def test_heidelberg_files_download_checked_and_gunzipped(server, tmp_path):
    import gzip

    from scnn.data.fixtures import write_heidelberg_files
    from scnn.data.heidelberg import download_heidelberg, read_event_file

    site, url, _ = server
    originals = write_heidelberg_files(tmp_path / "orig", "ssc", {"train": 4, "val": 2, "test": 2})
    digests = {}
    for path in originals.values():
        packed = gzip.compress(path.read_bytes())
        (site / f"{path.name}.gz").write_bytes(packed)
        digests[f"{path.name}.gz"] = hashlib.sha256(packed).hexdigest()
    with pytest.raises(ValueError, match=r"no SHA-256 known for ssc_train.h5.gz, ssc_valid.h5.gz, ssc_test.h5.gz "
                                         r"and not listed in .*/md5sums.txt"):
        download_heidelberg("ssc", tmp_path / "ssc", base_url=url, progress=False)
    wrong = {**digests, "ssc_test.h5.gz": "2" * 64}
    with pytest.raises(DownloadError, match="ssc_test.h5 .*failed its SHA-256 check"):
        download_heidelberg("ssc", tmp_path / "ssc", wrong, base_url=url, progress=False)
    assert sorted(p.name for p in (tmp_path / "ssc").iterdir()) == ["ssc_train.h5", "ssc_valid.h5"]
    files = download_heidelberg("ssc", tmp_path / "ssc", digests, base_url=url, progress=False)
    assert sorted(p.name for p in (tmp_path / "ssc").iterdir()) == ["ssc_test.h5", "ssc_train.h5", "ssc_valid.h5"]
    for part, path in files.items():
        assert path.read_bytes() == originals[part].read_bytes()
    assert len(read_event_file(files["val"]).labels) == 2

    # without pinned digests: each file is checked against the authors' md5sums.txt (as zenkelab.org publishes)
    sums = {f"{p.name}.gz": hashlib.md5((site / f"{p.name}.gz").read_bytes()).hexdigest() for p in originals.values()}
    (site / "md5sums.txt").write_text("".join(f"{md5}  {name}\n" for name, md5 in sums.items()))
    files = download_heidelberg("ssc", tmp_path / "by_md5", base_url=url, progress=False)
    assert all(path.read_bytes() == originals[part].read_bytes() for part, path in files.items())
    assert sorted(p.name for p in (tmp_path / "by_md5").iterdir()) == ["ssc_test.h5", "ssc_train.h5", "ssc_valid.h5"]
    (site / "md5sums.txt").write_text(f"{'3' * 32}  ssc_test.h5.gz\n" + "".join(
        f"{md5}  {name}\n" for name, md5 in sums.items() if name != "ssc_test.h5.gz"))
    with pytest.raises(DownloadError, match="ssc_test.h5 .*failed its MD5 check"):
        download_heidelberg("ssc", tmp_path / "bad_md5", base_url=url, progress=False)
    assert sorted(p.name for p in (tmp_path / "bad_md5").iterdir()) == ["ssc_train.h5", "ssc_valid.h5"]
