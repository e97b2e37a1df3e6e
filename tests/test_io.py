"""Atomic writes, safetensors provenance, downloads and safe extraction."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import signal
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from subspacelab.data.download import DownloadError, Resource, fetch, safe_extract, verify
from subspacelab.io import (
    CorruptFileError,
    DiskFullError,
    MissingFileError,
    ModelFileError,
    NonFiniteError,
    atomic_path,
    disk_full_is_clear,
    load_tensors,
    read_json,
    recover_dir,
    replace_dir,
    save_tensors,
    write_json,
)


def test_atomic_path_leaves_nothing_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text().strip().startswith("{")
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_tensors_round_trip_and_refuse_other_study(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_tensors(
        path, {"w": torch.arange(6.0).reshape(2, 3), "b": np.ones(2)}, study="gcr", kind="model"
    )
    tensors, header = load_tensors(path, study="gcr", kind="model")
    assert torch.equal(tensors["w"], torch.arange(6.0).reshape(2, 3))
    assert header["subspacelab.study"] == "gcr"
    with pytest.raises(ModelFileError, match=r"written by study 'gcr'.*'subspacead'"):
        load_tensors(path, study="subspacead")
    with pytest.raises(ModelFileError, match="expected 'features'"):
        load_tensors(path, study="gcr", kind="features")


def test_corrupt_and_missing_model_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(ModelFileError, match="not a readable safetensors"):
        load_tensors(bad, study="gcr")
    with pytest.raises(ModelFileError, match="missing"):
        load_tensors(tmp_path / "none.safetensors", study="gcr")


def _resource(path: Path, payload: bytes, *, good: bool = True) -> Resource:
    digest = hashlib.sha256(payload if good else b"other").hexdigest()
    return Resource(url=path.as_uri(), filename="file.bin", sha256=digest)


def test_fetch_verifies_sha256(tmp_path: Path) -> None:
    src = tmp_path / "remote.bin"
    src.write_bytes(b"payload")
    dest = tmp_path / "dl"
    got = fetch(_resource(src, b"payload"), dest)
    assert got.read_bytes() == b"payload"
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        fetch(_resource(src, b"payload", good=False), tmp_path / "dl2")
    assert not (tmp_path / "dl2" / "file.bin").exists()


def test_mismatching_local_copy_is_kept_and_not_replaced(tmp_path: Path) -> None:
    f = tmp_path / "file.bin"
    f.write_bytes(b"tampered")
    res = Resource(
        url="https://example.invalid/f", filename="file.bin", md5=hashlib.md5(b"x").hexdigest()
    )
    with pytest.raises(DownloadError, match=r"md5 mismatch.*left in place"):
        verify(f, res)
    assert f.read_bytes() == b"tampered"
    # fetch verifies the copy in place (no download is tried: the URL does not resolve)
    with pytest.raises(DownloadError, match=r"md5 mismatch.*never deleted"):
        fetch(res, tmp_path)
    assert f.read_bytes() == b"tampered"


def test_resource_needs_a_checksum() -> None:
    with pytest.raises(DownloadError, match="must be pinned"):
        Resource(url="https://example.invalid/f", filename="f")


def _tar_with(tmp_path: Path, name: str, kind: bytes = tarfile.REGTYPE) -> Path:
    path = tmp_path / "a.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo(name)
        info.type = kind
        data = b"x"
        info.size = len(data) if kind == tarfile.REGTYPE else 0
        if kind == tarfile.SYMTYPE:
            info.linkname = "/etc/passwd"
        tf.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return path


def test_safe_extract_ok(tmp_path: Path) -> None:
    files = safe_extract(_tar_with(tmp_path, "dir/ok.txt"), tmp_path / "out")
    assert [p.relative_to(tmp_path / "out").as_posix() for p in files] == ["dir/ok.txt"]


def test_safe_extract_keeps_only_the_members_asked_for(tmp_path: Path) -> None:
    for kind in ("tar", "zip"):
        path = tmp_path / f"a.{kind}"
        names = ["d/keep.bin", "d/skip.bin", "other.txt"]
        if kind == "zip":
            with zipfile.ZipFile(path, "w") as zf:
                for name in names:
                    zf.writestr(name, name)
        else:
            with tarfile.open(path, "w") as tf:
                for name in names:
                    info = tarfile.TarInfo(name)
                    info.size = len(name)
                    tf.addfile(info, io.BytesIO(name.encode()))
        out = tmp_path / f"out_{kind}"
        files = safe_extract(path, out, keep=lambda name: name.endswith("keep.bin"))
        assert [p.relative_to(out).as_posix() for p in files] == ["d/keep.bin"]
        assert (out / "d" / "keep.bin").read_text() == "d/keep.bin"
        assert not (out / "d" / "skip.bin").exists() and not (out / "other.txt").exists()
    # a member that is not kept is still checked: a hostile archive is refused all the same
    with pytest.raises(DownloadError, match="unsafe path"):
        safe_extract(_tar_with(tmp_path, "../evil.txt"), tmp_path / "o2", keep=lambda _n: False)
    with pytest.raises(DownloadError, match="link or special"):
        safe_extract(
            _tar_with(tmp_path, "link", tarfile.SYMTYPE), tmp_path / "o3", keep=lambda _n: False
        )


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt"])
def test_safe_extract_refuses_traversal(tmp_path: Path, name: str) -> None:
    with pytest.raises(DownloadError, match="unsafe path"):
        safe_extract(_tar_with(tmp_path, name), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "evil.txt").exists()


def test_safe_extract_refuses_links_and_zip_traversal(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="link or special"):
        safe_extract(_tar_with(tmp_path, "link", tarfile.SYMTYPE), tmp_path / "out")
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("../evil.txt", "x")
    with pytest.raises(DownloadError, match="unsafe path"):
        safe_extract(z, tmp_path / "out")


def test_same_tensors_same_bytes(tmp_path: Path) -> None:
    tensors = {f"t{i}": torch.full((3, i + 1), float(i)) for i in range(12)}
    meta = {f"m{i}": str(i) for i in range(12)}
    blobs = set()
    for name in ("a", "b", "c"):
        path = tmp_path / f"{name}.safetensors"
        save_tensors(path, tensors, study="gcr", kind="model", meta=meta)
        blobs.add(path.read_bytes())
        loaded, header = load_tensors(path, study="gcr")
        assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
        assert header["m11"] == "11"
    assert len(blobs) == 1


def test_manually_placed_file_is_kept_on_mismatch(tmp_path: Path) -> None:
    f = tmp_path / "archive.tar"
    f.write_bytes(b"user download")
    res = Resource(url=f.as_uri(), filename=f.name, sha256=hashlib.sha256(b"other").hexdigest())
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        verify(f, res)
    assert f.read_bytes() == b"user download"


def test_write_json_is_strict_and_names_the_key(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    with pytest.raises(NonFiniteError, match=r"metrics\.json: acc\.values\[1\] is nan"):
        write_json(target, {"acc": {"values": [0.5, float("nan")]}})
    with pytest.raises(NonFiniteError, match=r"loss is -inf"):
        write_json(target, {"loss": np.float32("-inf")})
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary file either


def test_read_json_refuses_nan_and_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "old.json"
    bad.write_text('{"acc": NaN}')
    with pytest.raises(CorruptFileError, match=r"old\.json: corrupt JSON.*NaN"):
        read_json(bad)
    with pytest.raises(MissingFileError, match="run the stage that writes it"):
        read_json(tmp_path / "none.json")


_KILL_BETWEEN_RENAMES = """
import os, signal, sys
from pathlib import Path
from subspacelab import io
real = os.replace
def replace(src, dst):
    real(src, dst)
    if ".old-" in str(dst):  # the old directory moved aside; the new one not yet in place
        os.kill(os.getpid(), signal.SIGKILL)
io.os.replace = replace
io.replace_dir(Path(sys.argv[1]), Path(sys.argv[2]))
"""


def _staged(tmp_path: Path, name: str, text: str) -> Path:
    staged = tmp_path / name
    staged.mkdir()
    (staged / "f.txt").write_text(text)
    return staged


def test_replace_dir_killed_between_renames_recovers(tmp_path: Path) -> None:
    final = tmp_path / "out" / "step"
    replace_dir(_staged(tmp_path, "v1", "one"), final)
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_BETWEEN_RENAMES, str(_staged(tmp_path, "v2", "two")), final],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL
    left = [p.name for p in final.parent.iterdir()]
    assert not final.exists() and len(left) == 1 and left[0].startswith(".step.old-")
    recover_dir(final)  # what the runner does before a step: the previous output is back
    assert (final / "f.txt").read_text() == "one"
    assert [p.name for p in final.parent.iterdir()] == ["step"]


def test_replace_dir_clears_leftovers_beside_an_existing_dir(tmp_path: Path) -> None:
    final = tmp_path / "step"
    replace_dir(_staged(tmp_path, "v1", "one"), final)
    stale = tmp_path / ".step.old-999999999"  # no such process
    stale.mkdir()
    replace_dir(_staged(tmp_path, "v2", "two"), final)
    assert (final / "f.txt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step"]


def test_disk_full_is_one_clear_error() -> None:
    full = pytest.raises(DiskFullError, match=r"fake_fit: no space left on device while writing x")
    with full, disk_full_is_clear("fake_fit"):
        raise OSError(errno.ENOSPC, "No space left on device", "x")
    with pytest.raises(PermissionError), disk_full_is_clear("fake_fit"):
        raise PermissionError(errno.EACCES, "denied")
