"""Downloads of the data sets: pinned addresses, SHA-256 checked, atomic, resumable, with a progress bar.

:func:`download_file` hands the fetching, the hash check and the move into place to pooch
(``pooch.retrieve``: the file is written to a temporary name beside its destination and renamed
only after its SHA-256 matched), with :class:`ResumingDownloader` as the transport: it keeps the
bytes received so far in ``<destination>.part`` and asks the server for the rest (an HTTP Range
request) when called again after an interruption. ``file://`` addresses are copied, so a local
mirror works the same way. Every data set also takes a folder the user already has (``--data-dir``),
which is never downloaded into.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import tarfile
import urllib.parse
import urllib.request
from pathlib import Path


class DownloadError(RuntimeError):
    """Downloading, checking or unpacking failed; nothing half-written was left at the destination."""


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ResumingDownloader:
    """A pooch downloader that resumes: bytes arrive in ``part`` (kept across interruptions), the rest is
    asked for with ``Range: bytes=<have>-``; a server that ignores the range sends everything again.

    what: the name in messages and on the progress bar; timeout_s: per connection read.
    """

    def __init__(self, part: str | Path, what: str, progress: bool = True, timeout_s: float = 60.0):
        self.part, self.what, self.progress, self.timeout_s = Path(part), what, progress, timeout_s

    def __call__(self, url: str, output_file, pooch_instance=None, check_only: bool = False):
        if check_only:
            return True
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme == "file":
            source = Path(urllib.request.url2pathname(parsed.path))
            if not source.is_file():
                raise DownloadError(f"cannot download {self.what} from {url} (no such file)")
            shutil.copyfile(source, self.part)
        else:
            self._fetch_http(url)
        # pooch renames its temporary file into place after the hash check; ours becomes it.
        os.replace(self.part, output_file if isinstance(output_file, (str, Path)) else output_file.name)

    def _fetch_http(self, url: str) -> None:
        import requests

        have = self.part.stat().st_size if self.part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with requests.get(url, headers=headers, stream=True, timeout=self.timeout_s) as response:
                if response.status_code == 416 and have:  # asked past the end: the part is complete
                    return
                if response.status_code >= 400:
                    raise DownloadError(f"cannot download {self.what} from {url} "
                                        f"(HTTP Error {response.status_code}: {response.reason})")
                resumed = response.status_code == 206
                length = int(response.headers.get("Content-Length") or 0)
                bar = None
                if self.progress:
                    from tqdm.auto import tqdm

                    bar = tqdm(total=(have if resumed else 0) + length or None, initial=have if resumed else 0,
                               unit="B", unit_scale=True, desc=self.what)
                with open(self.part, "ab" if resumed else "wb") as handle:
                    for block in response.iter_content(1 << 16):
                        handle.write(block)
                        if bar is not None:
                            bar.update(len(block))
                if bar is not None:
                    bar.close()
        except requests.RequestException as error:
            # requests wraps the cause three deep ("HTTPConnectionPool(...): Max retries exceeded ... [Errno 111]
            # Connection refused')"): show the operating system's reason where there is one.
            reason = re.search(r"\[Errno -?\d+\][^'\")]*", str(error))
            raise DownloadError(f"cannot download {self.what} from {url} "
                                f"({reason.group(0).strip() if reason else error})") from error


def download_file(url: str, dest: str | Path, sha256: str | None, what: str | None = None, progress: bool = True,
                  timeout_s: float = 60.0, md5: str | None = None) -> Path:
    """``dest``, fetched from ``url`` unless it is already there with the right SHA-256.

    sha256: the pinned hex digest (None: not checked, for archives checked file by file afterwards,
    as FSDD's). md5: instead of sha256, a publisher's MD5 (where that is all there is, as for SHD/SSC).
    A mismatch raises :class:`DownloadError` and removes the download, including the
    partial file, so the next call starts afresh; an interruption keeps ``dest.part`` for the next call.
    """
    if sha256 and md5:
        raise ValueError("download_file: pass sha256 or md5, not both")
    algorithm, digest = ("MD5", md5) if md5 else ("SHA-256", sha256)
    import pooch

    dest = Path(dest)
    what = what or dest.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    pooch.get_logger().setLevel("WARNING")  # our own progress bar and messages say what happens
    try:
        pooch.retrieve(url, known_hash=f"{algorithm.replace('-', '').lower()}:{digest}" if digest else None,
                       fname=dest.name, path=dest.parent, downloader=ResumingDownloader(part, what, progress, timeout_s))
    except ValueError as error:  # pooch's hash mismatch
        part.unlink(missing_ok=True)
        raise DownloadError(f"{what} from {url} failed its {algorithm} check (expected {digest}; the download "
                            "was removed)") from error
    return dest


def unpack_tar(archive: str | Path, dest: str | Path, what: str) -> Path:
    """Unpack ``archive`` (.tar, .tar.gz) into a staging folder beside ``dest``, then rename it to ``dest``.

    Members that would land outside the folder (absolute paths, ``..``, links) are refused (tarfile's
    "data" filter); on any failure nothing is left at ``dest``. The folder gets the permissions of any
    new folder (0o777 less the umask), not ``tempfile.mkdtemp``'s 0o700, so collaborators can read the data.
    """
    dest = Path(dest)
    if dest.exists():
        raise DownloadError(f"{dest} already exists; remove it to unpack again")
    staging = dest.parent / f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}"
    staging.mkdir()  # mode 0o777 less the umask, applied by the kernel; outside the try: never remove another's
    try:
        with tarfile.open(archive) as bundle:
            bundle.extractall(staging, filter="data")
        os.replace(staging, dest)
    except (tarfile.TarError, OSError) as error:
        raise DownloadError(f"cannot unpack {what} from {archive} ({error})") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest
