"""File IO: atomic writes, JSON, arrays and models as safetensors with provenance metadata.

Models carry the study and step that wrote them in their safetensors header, so loading a file
from another study fails with a clear message instead of a shape error deep inside a network.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save


class ModelFileError(ValueError):
    """A model or array file is missing, unreadable or belongs to another study."""


class MissingFileError(FileNotFoundError):
    """A JSON file a step reads is missing: the stage that writes it has not run."""


class CorruptFileError(ValueError):
    """A JSON file is not valid (strict) JSON."""


class DownloadError(ValueError):
    """A download failed, or a file is corrupt (checksum mismatch) or unsafe to extract."""


class NonFiniteError(ValueError):
    """A number that must be finite (a loss, a metric, a value written to JSON) is NaN or ±Inf."""


class DiskFullError(RuntimeError):
    """The disk (or quota) filled up while a stage wrote its outputs; nothing was committed."""


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def disk_full_is_clear(what: str) -> Iterator[None]:
    """Turn ENOSPC/EDQUOT raised inside the block into a :class:`DiskFullError` naming ``what``
    (a stage) and the file; any other error passes unchanged."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        where = f" while writing {exc.filename}" if exc.filename else ""
        raise DiskFullError(
            f"{what}: no space left on device{where}; nothing was committed (the previous "
            "outputs are untouched): free some space and run it again",
        ) from exc


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success it replaces ``path`` in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, data: object) -> None:
    """Write strict JSON atomically, with sorted keys for stable diffs.

    NaN and ±Infinity are not JSON: a NonFiniteError names the file and the key holding one,
    and nothing is written.
    """
    try:
        text = json.dumps(data, indent=2, sort_keys=True, default=_json_default, allow_nan=False)
    except ValueError:
        where, value = _first_non_finite(data, "")
        if where is None:
            raise
        raise NonFiniteError(
            f"{path}: {where or 'the value'} is {value}, which JSON cannot hold; nothing was "
            "written"
        ) from None
    write_text(path, text + "\n")


def _first_non_finite(data: object, where: str) -> tuple[str | None, float | None]:
    """The dotted key (``a.b[2]``) and value of the first NaN/±Inf in ``data``."""
    if isinstance(data, float | np.floating) and not math.isfinite(float(data)):
        return where, float(data)
    if isinstance(data, Mapping):
        items: Iterator[tuple[str, object]] = (
            (f"{where}.{k}" if where else str(k), v) for k, v in data.items()
        )
    elif isinstance(data, list | tuple | set):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(data))
    elif isinstance(data, np.ndarray):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(data.ravel().tolist()))
    else:
        return None, None
    for key, value in items:
        found = _first_non_finite(value, key)
        if found[0] is not None:
            return found
    return None, None


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple | set):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_json(path: Path) -> Any:
    """Read strict JSON (no NaN/Infinity); a clear error naming the file if it is missing
    (MissingFileError) or corrupt (CorruptFileError)."""
    if not path.is_file():
        raise MissingFileError(f"{path}: missing; run the stage that writes it first")
    try:
        return json.loads(path.read_text(), parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise CorruptFileError(f"{path}: corrupt JSON ({exc})") from None


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_hashes(path: Path, chunk: int = 1 << 20) -> dict[str, str]:
    """Hex SHA-256 and MD5 (DVC's hash) of a file, in one streamed read."""
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            sha.update(block)
            md5.update(block)
    return {"sha256": sha.hexdigest(), "md5": md5.hexdigest()}


def save_tensors(
    path: Path,
    tensors: Mapping[str, torch.Tensor | np.ndarray],
    *,
    study: str,
    kind: str,
    meta: Mapping[str, str] | None = None,
) -> None:
    """Save tensors (a state dict, features, arrays) as safetensors, atomically.

    The header records ``study`` and ``kind`` (for example ``model/gcr4`` or ``features``).
    """
    data = {
        k: (torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v)
        .detach()
        .cpu()
        .contiguous()
        for k, v in tensors.items()
    }
    header = {"subspacelab.study": study, "subspacelab.kind": kind, **(meta or {})}
    with atomic_path(path) as tmp:
        tmp.write_bytes(_canonical(save(data, metadata=header)))


def _canonical(blob: bytes) -> bytes:
    """The same safetensors file with its JSON header's keys sorted.

    safetensors writes the header from a hash map, so the key order (and the file's bytes) change
    from run to run; sorted, identical tensors give identical files and stable DVC hashes.
    Offsets in the header are relative to the data section, so re-serialising is safe.
    """
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8-byte alignment
    return len(text).to_bytes(8, "little") + text + blob[8 + n :]


def load_tensors(
    path: Path, *, study: str, kind: str | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load a safetensors file written by :func:`save_tensors` for ``study`` (and ``kind``).

    Raises ModelFileError naming the file and the study that wrote it when it is another's.
    """
    if not path.is_file():
        raise ModelFileError(f"{path}: missing; run the stage that writes it first")
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = dict(fh.metadata() or {})
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - not a dict
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise ModelFileError(f"{path}: not a readable safetensors file ({exc})") from None
    owner = header.get("subspacelab.study")
    if owner != study:
        raise ModelFileError(
            f"{path}: written by study {owner!r}, but study {study!r} is loading it; "
            "point the stage at its own outputs"
        )
    if kind is not None and header.get("subspacelab.kind") != kind:
        raise ModelFileError(f"{path}: holds {header.get('subspacelab.kind')!r}, expected {kind!r}")
    return tensors, header


def replace_dir(staged: Path, final: Path) -> None:
    """Move a fully written directory into place, replacing any previous one.

    Two renames: the old directory to ``.<name>.old-<pid>``, the new one into place. A process
    killed between them leaves the old one under that name; :func:`recover_dir` (run here first,
    and by the runner before a step) puts it back or removes it.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(final)
    trash = final.parent / f".{final.name}.old-{os.getpid()}"
    if final.exists():
        os.replace(final, trash)
    os.replace(staged, final)
    if trash.exists():
        shutil.rmtree(trash)


def recover_dir(final: Path) -> None:
    """Clear what a :func:`replace_dir` killed between its two renames left beside ``final``.

    With ``final`` missing, the newest leftover is the previous complete directory and is moved
    back; every other leftover is removed. Leftovers of a live process (mid-commit) are kept.
    """
    leftovers = sorted(
        (p for p in final.parent.glob(f".{final.name}.old-*") if not _alive(p)),
        key=lambda p: p.stat().st_mtime,
    )
    if leftovers and not final.exists() and leftovers[-1].is_dir():
        os.replace(leftovers.pop(), final)
    for path in leftovers:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _alive(leftover: Path) -> bool:
    """Whether the process whose id ends the leftover's name is still running (not this one)."""
    pid = leftover.name.rpartition("-")[2]
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
