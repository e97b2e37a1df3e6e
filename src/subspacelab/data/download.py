"""Real downloads for the ``full`` profiles: streamed, SHA-256 checked, safely extracted.

A download whose checksum does not match is not kept, and the error names the URL, the expected
and the actual digest; a file already in place (a download, or one placed by hand) is verified
and never deleted. Archives are extracted member by member, refusing absolute paths, ``..``,
links and device files, so a hostile archive cannot write outside its target directory.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from subspacelab.io import DISK_FULL, DownloadError, atomic_path, sha256_file


@dataclass(frozen=True)
class Resource:
    """One remote file: where it lives, the local file name and its published checksum.

    ``sha256`` is preferred. Some datasets publish only an MD5 (CIFAR, MNIST): then ``md5`` is
    checked and the SHA-256 computed on the first fetch is recorded by the caller.
    """

    url: str
    filename: str
    sha256: str | None = None
    md5: str | None = None

    def __post_init__(self) -> None:
        if not (self.sha256 or self.md5):
            raise DownloadError(f"{self.filename}: a sha256 (or published md5) must be pinned")


def _digest(path: Path, algo: str) -> str:
    if algo == "sha256":
        return sha256_file(path)
    h = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _mismatch(path: Path, resource: Resource) -> str | None:
    for algo in ("sha256", "md5"):
        expected = getattr(resource, algo)
        if expected and _digest(path, algo) != expected.lower():
            return f"{algo} mismatch (expected {expected.lower()}, got {_digest(path, algo)})"
    return None


def verify(path: Path, resource: Resource) -> Path:
    """Check a file's checksum; on a mismatch raise DownloadError naming it.

    The file is never deleted: it may have been placed by hand (a licence-gated archive, one no
    longer served), and :func:`fetch` only ever puts verified downloads in place, so a mismatch is
    the user's to resolve.
    """
    if not path.is_file():
        raise DownloadError(f"{path}: missing")
    problem = _mismatch(path, resource)
    if problem:
        raise DownloadError(
            f"{path}: {problem}; the file is corrupt or a different release. It was left in "
            "place (files are never deleted): replace it with the pinned release, or remove it "
            "to download it again"
        )
    return path


def fetch(
    resource: Resource,
    dest_dir: Path,
    progress: Callable[[str], None] = lambda _msg: None,
    chunk: int = 1 << 20,
    timeout: float = 60.0,
) -> Path:
    """Download ``resource`` into ``dest_dir``, unless a copy is already there: that one (a
    previous download or a file placed by hand) is verified instead, and never replaced.

    A failed transfer (HTTP error, no answer within ``timeout`` seconds, a connection closed
    before ``Content-Length`` bytes arrived) or a checksum mismatch raises DownloadError naming
    the URL, and leaves nothing in ``dest_dir``.
    """
    dest = dest_dir / resource.filename
    if dest.is_file():
        return verify(dest, resource)
    if not resource.url.startswith(("https://", "http://", "file://")):
        raise DownloadError(f"{resource.url}: only http(s) and file URLs are allowed")
    progress(f"downloading {resource.url}")
    with atomic_path(dest) as tmp:
        try:
            with (
                urllib.request.urlopen(resource.url, timeout=timeout) as resp,
                tmp.open("wb") as out,
            ):
                total = int(resp.headers.get("Content-Length") or 0)
                done = 0
                next_report = 0.0
                while block := resp.read(chunk):
                    out.write(block)
                    done += len(block)
                    if total and done / total >= next_report:
                        progress(f"{dest.name}: {100 * done / total:5.1f}% of {total >> 20} MiB")
                        next_report += 0.1
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, OSError) and exc.errno in DISK_FULL:
                raise  # the runner's disk-full error, not a download problem
            raise DownloadError(
                f"{resource.url}: download failed ({_failure(exc, timeout)}); nothing was kept"
            ) from None
        if total and done != total:
            raise DownloadError(
                f"{resource.url}: download failed (truncated: {done} of {total} bytes); "
                "nothing was kept"
            )
        problem = _mismatch(tmp, resource)
        if problem:
            raise DownloadError(f"{resource.url}: {problem}; nothing was kept")
    return dest


def _failure(exc: BaseException, timeout: float) -> str:
    """What went wrong with a transfer, in words."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, http.client.IncompleteRead):
        return f"connection closed early, {reason.expected} more bytes were due: truncated"
    return str(reason)


def _safe_target(dest: Path, name: str) -> Path:
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or not name.strip():
        raise DownloadError(f"unsafe path in archive: {name!r}")
    target = (dest / pure).resolve()
    if not target.is_relative_to(dest.resolve()):
        raise DownloadError(f"unsafe path in archive: {name!r}")
    return target


def safe_extract(
    archive: Path, dest: Path, keep: Callable[[str], bool] | None = None
) -> list[Path]:
    """Extract a tar(.gz/.bz2/.xz) or zip archive into ``dest`` without path traversal.

    Only regular files and directories are extracted; links and special files are refused.
    ``keep``: when given, only the files whose member name it accepts are written (every
    member's name and type is still checked, so a hostile archive is refused all the same).
    Extraction goes to a temporary sibling directory that is renamed into place at the end.
    """
    tmp = dest.parent / f".{dest.name}.extract-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    written: list[Path] = []
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    target = _safe_target(tmp, info.filename)
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    mode = (info.external_attr >> 16) & 0o170000
                    if mode not in (0, 0o100000):
                        raise DownloadError(
                            f"{archive}: refusing non-regular member {info.filename!r}"
                        )
                    if keep is not None and not keep(info.filename):
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, target.open("wb") as out:
                        shutil.copyfileobj(src, out)
                    written.append(target)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                for member in tf:
                    target = _safe_target(tmp, member.name)
                    if member.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    if not member.isfile():
                        raise DownloadError(
                            f"{archive}: refusing link or special member {member.name!r}"
                        )
                    if keep is not None and not keep(member.name):
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    src = tf.extractfile(member)
                    if src is None:
                        raise DownloadError(f"{archive}: unreadable member {member.name!r}")
                    with src, target.open("wb") as out:
                        shutil.copyfileobj(src, out)
                    written.append(target)
        else:
            raise DownloadError(f"{archive}: not a tar or zip archive")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return [dest / p.relative_to(tmp) for p in written]
