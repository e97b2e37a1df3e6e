"""File IO: atomic writes, JSON, arrays and models as safetensors with provenance metadata.

Models carry the study and step that wrote them in their safetensors header, so loading a file
from another study fails with a clear message instead of a shape error deep inside a network.
"""

from __future__ import annotations

import hashlib
import json
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
    """Write JSON atomically, with sorted keys for stable diffs."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple | set):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_json(path: Path) -> Any:
    """Read JSON; a clear error naming the file if it is missing or corrupt."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run the stage that writes it first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: corrupt JSON ({exc})") from None


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
    """Move a fully written directory into place, replacing any previous one."""
    final.parent.mkdir(parents=True, exist_ok=True)
    trash = final.parent / f".{final.name}.old-{os.getpid()}"
    if final.exists():
        os.replace(final, trash)
    os.replace(staged, final)
    if trash.exists():
        shutil.rmtree(trash)
