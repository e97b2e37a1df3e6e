"""Readers of the real logs behind the recommendation group's full profiles.

* Avazu (Kaggle ``avazu-ctr-prediction``, ``train.gz``; ~40.4M rows) and KDD Cup 2012 track 2
  (``training.txt``; ~149.6M rows) for optfs (Lyu et al., WWW 2023, arXiv:2301.10909) and
  unified_embedding (Coleman et al., NeurIPS 2023, arXiv:2305.12102): streamed in chunks of at most
  ``chunk_rows`` rows, so a file of any length is read in constant memory.
* MovieLens-1M (``ml-1m.zip``, files.grouplens.org) for unified_embedding, as a CTR log and as
  implicit feedback: 1M ratings, read whole from the archive (no extraction).
* MMRec's Amazon Baby / Sports / Clothing (``<name>.inter`` with ``image_feat.npy`` and
  ``text_feat.npy``, from the MMRec README's data link) for cm3 (Zhou, Wang, Shen 2025,
  arXiv:2508.01226).

The preprocessing follows the OptFS repository's semantics: Avazu's ``hour`` (YYMMDDHH) becomes
hour of day, weekday and weekend flag (24 fields); a KDD12 line's label is ``clicks > 0`` and its
11 fields are the columns after the click count (the impression count is one of them, as in the
reference transform); values seen fewer than ``threshold`` times become one out-of-vocabulary id
per field (:class:`FieldVocab`). Every categorical value is a non-negative int64 id: hex strings
are read as hex, decimal integers zigzag-encoded (so Avazu's -1 values stay distinct ids).

A malformed or truncated file raises :class:`DatasetError` naming the file and line. Files are
verified against :class:`PinnedFile` pins; where the public file's SHA-256 cannot be known
offline (Kaggle's and Google Drive's downloads need credentials) the pin is left empty and
``subspacelab check`` lists it.
"""

from __future__ import annotations

import datetime
import gzip
import itertools
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from subspacelab.config import param
from subspacelab.data.download import DownloadError, Resource, fetch, verify


class DatasetError(ValueError):
    """A dataset file is malformed or truncated; the message names the file and line."""


# ----------------------------------------------------------------------------------- pins

MOVIELENS_1M = Resource(
    "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
    "ml-1m.zip",
    # 5,917,549 bytes; SHA-256 as in tensorflow/datasets' url_checksums, MD5 as GroupLens publishes
    sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
    md5="c4d9eecfca2ab87c1945afe126590906",
)
# The public files' SHA-256 where it is known; hand-placed files without one stay unpinned.
KNOWN_SHA256: dict[str, str] = {MOVIELENS_1M.filename: MOVIELENS_1M.sha256 or ""}

_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass
class PinnedFile:
    """One input file of a full profile: ``dir/file`` under the lab root, pinned by SHA-256.

    An empty ``file`` means the profile reads no such file (a ``mini`` profile). An empty
    ``sha256`` is listed by ``subspacelab check`` and refused before any compute.
    """

    dir: str = param()
    file: str = param()
    sha256: str = param()

    def check(self) -> dict[str, str]:
        """A plain file name, a relative directory without ``..``, a 64-hex-digit pin that
        agrees with the public one where that is known."""
        if self.file and (PurePosixPath(self.file).name != self.file or self.file in {".", ".."}):
            return {"file": "a plain file name (no directories)"}
        d = PurePosixPath(self.dir)
        if d.is_absolute() or ".." in d.parts:
            return {"dir": "a relative directory under the lab root, without '..'"}
        if self.sha256 and not _HEX64.fullmatch(self.sha256):
            return {"sha256": "64 lowercase hex digits, or empty while unpinned"}
        known = KNOWN_SHA256.get(self.file)
        if self.sha256 and known and self.sha256 != known:
            return {"sha256": f"the public {self.file}'s SHA-256 {known}"}
        return {}

    def unpinned(self) -> dict[str, str]:
        """The file is read but its SHA-256 is not pinned."""
        if self.file and not self.sha256:
            known = KNOWN_SHA256.get(self.file)
            hint = f" (the public file's is {known})" if known else ""
            return {"sha256": f"SHA-256 of your copy of {self.file}{hint}"}
        return {}

    def path(self, root: Path) -> Path:
        """The verified file; DownloadError when it is missing, unpinned or does not match."""
        if not self.file:
            raise DownloadError("no file configured")
        if not self.sha256:
            raise DownloadError(f"{self.file}: sha256 is empty; pin your copy's SHA-256 first")
        path = Path(root) / self.dir / self.file
        return verify(path, Resource(f"file://{self.dir}", self.file, sha256=self.sha256))


def fetch_movielens_1m(dest_dir: Path, progress: Callable[[str], None]) -> Path:
    """``ml-1m.zip`` from GroupLens into ``dest_dir`` (or the copy already there), verified."""
    return fetch(MOVIELENS_1M, Path(dest_dir), progress)


# ------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class CTRChunk:
    """Labels (n,) in {0, 1} and categorical ids (n, fields), all >= 0."""

    labels: np.ndarray
    x: np.ndarray


def zigzag(v: int) -> int:
    """A non-negative id for any integer: 0, -1, 1, -2, ... -> 0, 1, 2, 3, ..."""
    return 2 * v if v >= 0 else -2 * v - 1


def _numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) of a text or .gz file; a truncated .gz raises DatasetError."""
    opener = gzip.open if path.suffix == ".gz" else open
    line_no = 0
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as fh:  # type: ignore[operator]
            for line_no, line in enumerate(fh, start=1):
                yield line_no, line
    except (EOFError, gzip.BadGzipFile, zlib.error, UnicodeDecodeError) as exc:
        raise DatasetError(
            f"{path}:{line_no + 1}: unreadable after line {line_no} (truncated or corrupt: {exc})"
        ) from None


def _chunks(lines: Iterator[tuple[int, str]], chunk_rows: int) -> Iterator[list[tuple[int, str]]]:
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    while block := list(itertools.islice(lines, chunk_rows)):
        yield block


def _fields(path: Path, line_no: int, line: str, sep: str, n: int) -> list[str]:
    if not line.endswith("\n"):
        raise DatasetError(f"{path}:{line_no}: the last line has no newline (truncated file?)")
    fields = line.rstrip("\r\n").split(sep)
    if len(fields) != n:
        raise DatasetError(
            f"{path}:{line_no}: expected {n} fields separated by {sep!r}, got {len(fields)}"
        )
    return fields


# ---------------------------------------------------------------------------------- Avazu

AVAZU_HEADER: tuple[str, ...] = (
    *("id", "click", "hour", "C1", "banner_pos"),
    *("site_id", "site_domain", "site_category", "app_id", "app_domain", "app_category"),
    *("device_id", "device_ip", "device_model", "device_type", "device_conn_type"),
    *(f"C{k}" for k in range(14, 22)),
)
_AVAZU_HEX = frozenset(
    (
        "site_id",
        "site_domain",
        "site_category",
        "app_id",
        "app_domain",
        "app_category",
        "device_id",
        "device_ip",
        "device_model",
    )
)
AVAZU_FIELDS: tuple[str, ...] = ("hour_of_day", "weekday", "is_weekend", *AVAZU_HEADER[3:])


def _avazu_row(path: Path, line_no: int, line: str, x: np.ndarray) -> float:
    f = _fields(path, line_no, line, ",", len(AVAZU_HEADER))
    try:
        label = int(f[1])
        hour = f[2]
        if len(hour) != 8 or not hour.isdigit():
            raise ValueError(f"hour must be YYMMDDHH, got {hour!r}")
        day = datetime.date(2000 + int(hour[:2]), int(hour[2:4]), int(hour[4:6]))
        hh = int(hour[6:])
        if hh > 23:
            raise ValueError(f"hour of day {hh} in {hour!r}")
        weekday = (day.weekday() + 1) % 7  # 0 = Sunday, as strftime('%w')
        x[0], x[1], x[2] = hh, weekday, int(weekday in (0, 6))
        for j, (name, v) in enumerate(zip(AVAZU_HEADER[3:], f[3:], strict=True), start=3):
            x[j] = int(v, 16) if name in _AVAZU_HEX else zigzag(int(v))
    except ValueError as exc:
        raise DatasetError(f"{path}:{line_no}: {exc}") from None
    if label not in (0, 1):
        raise DatasetError(f"{path}:{line_no}: click must be 0 or 1, got {f[1]!r}")
    return float(label)


def stream_avazu(path: Path, chunk_rows: int) -> Iterator[CTRChunk]:
    """Chunks of at most ``chunk_rows`` rows of Avazu's ``train`` (.csv or .gz), in file
    (time) order: 24 fields named by :data:`AVAZU_FIELDS`."""
    path = Path(path)
    lines = _numbered_lines(path)
    first = next(lines, None)
    if first is None or tuple(first[1].rstrip("\r\n").split(",")) != AVAZU_HEADER:
        raise DatasetError(
            f"{path}:1: expected Avazu's train header ({','.join(AVAZU_HEADER[:4])},...)"
        )
    for block in _chunks(lines, chunk_rows):
        labels = np.empty(len(block), np.float32)
        x = np.empty((len(block), len(AVAZU_FIELDS)), np.int64)
        for r, (line_no, line) in enumerate(block):
            labels[r] = _avazu_row(path, line_no, line, x[r])
        yield CTRChunk(labels, x)


# ---------------------------------------------------------------------------------- KDD12

KDD12_COLUMNS = (
    "Click",
    "Impression",
    "DisplayURL",
    "AdID",
    "AdvertiserID",
    "Depth",
    "Position",
    "QueryID",
    "KeywordID",
    "TitleID",
    "DescriptionID",
    "UserID",
)
KDD12_FIELDS: tuple[str, ...] = KDD12_COLUMNS[1:]
_LOW63 = (1 << 63) - 1  # DisplayURL is a 64-bit hash: folded to a non-negative int64


def stream_kdd12(path: Path, chunk_rows: int) -> Iterator[CTRChunk]:
    """Chunks of KDD Cup 2012 track 2's ``training.txt`` (tab-separated, no header): label
    ``Click > 0``, the 11 fields of :data:`KDD12_FIELDS` as ids (64-bit values mod 2^63: two
    DisplayURL hashes collide only when exactly 2^63 apart)."""
    path = Path(path)
    for block in _chunks(_numbered_lines(path), chunk_rows):
        labels = np.empty(len(block), np.float32)
        x = np.empty((len(block), len(KDD12_FIELDS)), np.int64)
        for r, (line_no, line) in enumerate(block):
            f = _fields(path, line_no, line, "\t", len(KDD12_COLUMNS))
            try:
                values = [int(v) for v in f]
            except ValueError as exc:
                raise DatasetError(f"{path}:{line_no}: {exc}") from None
            if min(values) < 0:
                raise DatasetError(f"{path}:{line_no}: negative count or id in {f}")
            if max(values) >= 1 << 64:
                raise DatasetError(f"{path}:{line_no}: an id exceeds 64 bits in {f}")
            if values[0] > values[1]:
                raise DatasetError(
                    f"{path}:{line_no}: {values[0]} clicks exceed {values[1]} impressions"
                )
            labels[r] = float(values[0] > 0)
            x[r] = [v & _LOW63 for v in values[1:]]
        yield CTRChunk(labels, x)


# ---------------------------------------------------------------------- rare values -> OOV


class FieldVocab:
    """Per-field counts of ids over a stream, then ids seen ``>= threshold`` times mapped to
    1..V_f and the rest to 0 (one out-of-vocabulary id per field), as OptFS's threshold.

    Memory grows with the number of distinct values, not with the rows.
    """

    def __init__(self, n_fields: int) -> None:
        self.values = [np.empty(0, np.int64) for _ in range(n_fields)]
        self.counts = [np.empty(0, np.int64) for _ in range(n_fields)]

    def update(self, x: np.ndarray) -> None:
        """Add a chunk's ids (n, fields)."""
        if x.ndim != 2 or x.shape[1] != len(self.values):
            raise ValueError(f"expected ids of shape (n, {len(self.values)}), got {x.shape}")
        for f in range(x.shape[1]):
            v, c = np.unique(x[:, f], return_counts=True)
            merged, inverse = np.unique(np.concatenate([self.values[f], v]), return_inverse=True)
            counts = np.zeros(merged.size, np.int64)
            np.add.at(counts, inverse, np.concatenate([self.counts[f], c]))
            self.values[f], self.counts[f] = merged, counts

    def kept(self, threshold: int) -> list[np.ndarray]:
        """Per field, the sorted ids seen at least ``threshold`` times."""
        if threshold < 1:
            raise ValueError(f"threshold must be >= 1, got {threshold}")
        return [v[c >= threshold] for v, c in zip(self.values, self.counts, strict=True)]

    def encode(self, x: np.ndarray, kept: list[np.ndarray]) -> np.ndarray:
        """Ids (n, fields) -> dense ids: 1 + rank among the kept, 0 when not kept."""
        out = np.zeros(x.shape, np.int64)
        for f, keep in enumerate(kept):
            pos = np.searchsorted(keep, x[:, f])
            hit = pos < keep.size
            hit[hit] = keep[pos[hit]] == x[hit, f]
            out[hit, f] = pos[hit] + 1
        return out


# ------------------------------------------------------------------------------ MovieLens

ML1M_USERS_FIELDS = ("gender", "age", "occupation", "zip")
ML1M_GENRES = (
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
MOVIELENS_FIELDS: tuple[str, ...] = ("user", "movie", *ML1M_USERS_FIELDS, "genres")


@dataclass(frozen=True)
class MovieLens:
    """MovieLens-1M ratings sorted by (timestamp, user, movie), and their side information.

    ``ratings`` (n, 4): user, movie, rating 1..5, timestamp. ``users[u]``: gender (0 F, 1 M),
    age group, occupation, zip id (the zip code's first five characters, dense). ``genres[m]``:
    a bitmask over :data:`ML1M_GENRES`.
    """

    ratings: np.ndarray
    users: dict[int, tuple[int, int, int, int]]
    genres: dict[int, int]

    def ctr(self, positive_min: int) -> tuple[np.ndarray, np.ndarray]:
        """The ratings as a CTR log in time order: label ``rating >= positive_min``, ids of
        :data:`MOVIELENS_FIELDS` (the genre set as one categorical id)."""
        if not 1 <= positive_min <= 5:
            raise ValueError(f"positive_min must be in 1..5, got {positive_min}")
        r = self.ratings
        side = np.array([self.users[int(u)] for u in r[:, 0]], np.int64).reshape(-1, 4)
        genres = np.array([self.genres[int(m)] for m in r[:, 1]], np.int64)
        x = np.concatenate([r[:, :2], side, genres[:, None]], axis=1)
        return (r[:, 2] >= positive_min).astype(np.float32), x

    def implicit(self, positive_min: int) -> np.ndarray:
        """(user, movie, timestamp) of the ratings ``>= positive_min``, in time order."""
        if not 1 <= positive_min <= 5:
            raise ValueError(f"positive_min must be in 1..5, got {positive_min}")
        keep = self.ratings[:, 2] >= positive_min
        return self.ratings[keep][:, [0, 1, 3]]


def _dat_lines(
    zf: zipfile.ZipFile, member: str, label: str, n: int
) -> Iterator[tuple[str, int, list[str]]]:
    try:
        raw = zf.read(member)
    except KeyError:
        raise DatasetError(f"{label}: no member {member}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DatasetError(f"{label}:{member}: unreadable ({exc})") from None
    text = raw.decode("latin-1")  # movies.dat has Latin-1 titles
    where = f"{label}:{member}"
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif lines:
        raise DatasetError(f"{where}:{len(lines)}: the last line has no newline (truncated?)")
    for i, line in enumerate(lines, start=1):
        fields = line.rstrip("\r").split("::")
        if len(fields) != n:
            raise DatasetError(
                f"{where}:{i}: expected {n} '::'-separated fields, got {len(fields)}"
            )
        yield f"{where}:{i}", i, fields


def load_movielens_1m(path: Path) -> MovieLens:
    """MovieLens-1M from ``ml-1m.zip`` (members ``ml-1m/{ratings,users,movies}.dat``)."""
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(f"{path}: not a readable zip archive ({exc})") from None
    with zf:
        users: dict[int, tuple[int, int, int, int]] = {}
        zips: dict[str, int] = {}
        for where, _, (uid, gender, age, occ, zc) in _dat_lines(
            zf, "ml-1m/users.dat", str(path), 5
        ):
            if gender not in ("F", "M"):
                raise DatasetError(f"{where}: gender must be F or M, got {gender!r}")
            try:
                users[int(uid)] = (
                    int(gender == "M"),
                    int(age),
                    int(occ),
                    zips.setdefault(zc[:5], len(zips)),
                )
            except ValueError as exc:
                raise DatasetError(f"{where}: {exc}") from None
        genres: dict[int, int] = {}
        for where, _, (mid, _title, names) in _dat_lines(zf, "ml-1m/movies.dat", str(path), 3):
            mask = 0
            for g in names.split("|"):
                if g not in ML1M_GENRES:
                    raise DatasetError(f"{where}: unknown genre {g!r}")
                mask |= 1 << ML1M_GENRES.index(g)
            try:
                genres[int(mid)] = mask
            except ValueError as exc:
                raise DatasetError(f"{where}: {exc}") from None
        rows = []
        for where, _, fields in _dat_lines(zf, "ml-1m/ratings.dat", str(path), 4):
            try:
                u, m, rating, ts = (int(v) for v in fields)
            except ValueError as exc:
                raise DatasetError(f"{where}: {exc}") from None
            if not 1 <= rating <= 5:
                raise DatasetError(f"{where}: rating must be 1..5, got {rating}")
            if u not in users or m not in genres:
                raise DatasetError(f"{where}: user {u} or movie {m} is not in users/movies.dat")
            rows.append((u, m, rating, ts))
    if not rows:
        raise DatasetError(f"{path}: ml-1m/ratings.dat has no ratings")
    ratings = np.array(rows, np.int64)
    ratings = ratings[np.lexsort((ratings[:, 1], ratings[:, 0], ratings[:, 3]))]
    return MovieLens(ratings, users, genres)


# ---------------------------------------------------------------------------------- MMRec

MMREC_DATASETS = ("baby", "sports", "clothing")
MMREC_COLUMNS = ("userID", "itemID", "x_label")


@dataclass(frozen=True)
class MMRecData:
    """An MMRec dataset: (user, item) pairs per split, item image and text features.

    Validation and test users without training interactions are dropped, as MMRec does with
    ``filter_out_cod_start_users: True``.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    n_users: int
    n_items: int
    image: np.ndarray
    text: np.ndarray


def _inter(path: Path) -> np.ndarray:
    """(n, 3) user, item, split label of an MMRec ``.inter`` file (tab-separated, header)."""
    lines = _numbered_lines(path)
    first = next(lines, None)
    header = first[1].rstrip("\r\n").split("\t") if first else []
    missing = [c for c in MMREC_COLUMNS if c not in header]
    if missing:
        raise DatasetError(f"{path}:1: header lacks column(s) {missing} (got {header})")
    cols = [header.index(c) for c in MMREC_COLUMNS]
    rows = []
    for line_no, line in lines:
        f = _fields(path, line_no, line, "\t", len(header))
        try:
            u, i, s = (int(f[c]) for c in cols)
        except ValueError as exc:
            raise DatasetError(f"{path}:{line_no}: {exc}") from None
        if u < 0 or i < 0 or s not in (0, 1, 2):
            raise DatasetError(
                f"{path}:{line_no}: ids must be >= 0 and x_label 0/1/2, got {u}, {i}, {s}"
            )
        rows.append((u, i, s))
    if not rows:
        raise DatasetError(f"{path}: no interactions")
    return np.array(rows, np.int64)


def _features(path: Path, n_items: int) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DatasetError(f"{path}: not a readable .npy array ({exc})") from None
    if arr.ndim != 2 or arr.shape[0] != n_items:
        raise DatasetError(f"{path}: expected ({n_items} items, d) features, got {arr.shape}")
    if arr.dtype.kind != "f" or not np.isfinite(arr).all():
        raise DatasetError(f"{path}: features must be finite floats (dtype {arr.dtype})")
    return arr.astype(np.float32, copy=False)


def load_mmrec(inter: Path, image: Path, text: Path) -> MMRecData:
    """An MMRec dataset from its ``.inter`` file and feature arrays (rows = items 0..N-1)."""
    rows = _inter(Path(inter))
    n_users, n_items = int(rows[:, 0].max()) + 1, int(rows[:, 1].max()) + 1
    splits = [rows[rows[:, 2] == s][:, :2] for s in range(3)]
    known = np.zeros(n_users, bool)
    known[splits[0][:, 0]] = True
    val, test = (s[known[s[:, 0]]] for s in splits[1:])
    return MMRecData(
        splits[0],
        val,
        test,
        n_users,
        n_items,
        _features(Path(image), n_items),
        _features(Path(text), n_items),
    )


# ---------------------------------------------------------------------- one CTR entry point

CTR_FIELDS: dict[str, int] = {
    "criteo": 39,
    "avazu": len(AVAZU_FIELDS),
    "kdd12": len(KDD12_FIELDS),
    "movielens": len(MOVIELENS_FIELDS),
}


def _ctr_chunks(
    source: str, path: Path, chunk_rows: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids, labels) per chunk of a streamed CTR log."""
    if source == "criteo":
        from subspacelab.recsys.logs import bucketise_counts, stream_criteo

        for c in stream_criteo(path, chunk_rows):
            yield np.concatenate([bucketise_counts(c.ints), c.cats], axis=1), c.labels
        return
    for chunk in (stream_avazu if source == "avazu" else stream_kdd12)(path, chunk_rows):
        yield chunk.x, chunk.labels


def read_ctr(
    source: str,
    path: Path,
    n_rows: int,
    progress: Callable[[str], None] = lambda _m: None,
    positive_min: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n_rows`` rows of a real CTR log in file (time) order: ids (n, fields) int64,
    all >= 0, and labels (n,) float32 in {0, 1}.

    ``source`` is ``criteo`` (13 integer features bucketised as ``bucketise_counts``, then the
    26 categorical ones), ``avazu``, ``kdd12`` (streamed: only the rows asked for are read) or
    ``movielens`` (``ml-1m.zip``, label ``rating >= positive_min``). A log shorter than
    ``n_rows`` raises :class:`DatasetError`.
    """
    if source not in CTR_FIELDS:
        raise ValueError(f"unknown CTR source {source!r}; known: {', '.join(CTR_FIELDS)}")
    if n_rows < 1:
        raise ValueError(f"n_rows must be >= 1, got {n_rows}")
    if source == "movielens":
        y, x = load_movielens_1m(path).ctr(positive_min)
    else:
        xs: list[np.ndarray] = []
        ys: list[np.ndarray] = []
        got = 0
        for cx, cy in _ctr_chunks(source, path, min(n_rows, 1 << 20)):
            xs.append(cx)
            ys.append(cy)
            got += len(cy)
            progress(f"{path.name}: {got} rows")
            if got >= n_rows:
                break
        if not xs:
            raise DatasetError(f"{path}: no rows")
        x, y = np.concatenate(xs), np.concatenate(ys)
    if len(y) < n_rows:
        raise DatasetError(f"{path}: {len(y)} rows, the split needs {n_rows}")
    return x[:n_rows].astype(np.int64), y[:n_rows].astype(np.float32)


@dataclass
class RealCTRLog:
    """The real CTR log of a full profile: ``source`` (a :data:`CTR_FIELDS` key), its pinned
    file (MovieLens-1M's is fetched when absent; the others are placed by hand) and, for
    MovieLens, the smallest rating counted as a click."""

    source: str = param(choices=tuple(CTR_FIELDS))
    log: PinnedFile = param()
    positive_min: int = param(ge=1, le=5)

    def check(self) -> dict[str, str]:
        """The log names its file."""
        return {} if self.log.file else {"log": f"the {self.source} log's file (log.file)"}

    def fields_problem(self, n_fields: int) -> str | None:
        """What ``n_fields`` must be for this log, where it is not that."""
        want = CTR_FIELDS[self.source]
        return None if n_fields == want else f"{want}, the {self.source} log's fields"

    def read(
        self, root: Path, n_rows: int, progress: Callable[[str], None]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The first ``n_rows`` rows (:func:`read_ctr`), the file verified against its pin."""
        if self.source == "movielens":
            fetch_movielens_1m(Path(root) / self.log.dir, progress)
        return read_ctr(self.source, self.log.path(root), n_rows, progress, self.positive_min)
