"""The full-profile loaders (subspacelab.recsys.datasets) on tiny files in the real formats."""

from __future__ import annotations

import gzip
import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from subspacelab.config import ParamsError, unpinned, validate
from subspacelab.data.download import DownloadError
from subspacelab.recsys.datasets import (
    AVAZU_FIELDS,
    AVAZU_HEADER,
    KDD12_FIELDS,
    MOVIELENS_1M,
    MOVIELENS_FIELDS,
    DatasetError,
    FieldVocab,
    PinnedFile,
    load_mmrec,
    load_movielens_1m,
    read_ctr,
    stream_avazu,
    stream_kdd12,
    zigzag,
)

AVAZU_ROWS = [
    # id, click, hour, C1, banner_pos, site x3, app x3, device_id, ip, model, type, conn, C14-21
    "1000009418151094273,0,14102100,1005,0,1fbe01fe,f3845767,28905ebd,ecad2386,7801e8d9,"
    "07d7df22,a99f214a,ddd2926e,44956a24,1,2,15706,320,50,1722,0,35,-1,79",
    "10000169349117863715,1,14102523,1002,1,85f751fd,c4e18dd6,50e219e0,9c13b419,2347f47a,"
    "f95efa07,0f2161f8,a4f3f2a1,711ee120,0,0,20596,320,50,2161,0,35,100084,157",
]


def _write_avazu(path: Path, rows: list[str], header: tuple[str, ...] = AVAZU_HEADER) -> Path:
    text = ",".join(header) + "\n" + "".join(r + "\n" for r in rows)
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def test_zigzag_is_a_bijection_onto_the_naturals() -> None:
    assert [zigzag(v) for v in (0, -1, 1, -2, 2)] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("name", ["train.csv", "train.gz"])
def test_avazu_fields_and_known_values(tmp_path: Path, name: str) -> None:
    path = _write_avazu(tmp_path / name, AVAZU_ROWS * 3)
    chunks = list(stream_avazu(path, chunk_rows=4))
    assert [c.labels.shape[0] for c in chunks] == [4, 2]  # constant-size chunks
    x = np.concatenate([c.x for c in chunks])
    y = np.concatenate([c.labels for c in chunks])
    assert x.shape == (6, 24) and len(AVAZU_FIELDS) == 24
    assert y.tolist() == [0, 1] * 3
    col = {f: x[:, j] for j, f in enumerate(AVAZU_FIELDS)}
    # 2014-10-21 was a Tuesday (weekday 2), 2014-10-25 a Saturday (6, weekend)
    assert col["hour_of_day"][:2].tolist() == [0, 23]
    assert col["weekday"][:2].tolist() == [2, 6]
    assert col["is_weekend"][:2].tolist() == [0, 1]
    assert col["site_id"][0] == 0x1FBE01FE and col["device_ip"][1] == 0xA4F3F2A1
    assert col["C1"][0] == 2 * 1005
    assert col["C20"][:2].tolist() == [1, 2 * 100084]  # -1 zigzags to 1
    assert (x >= 0).all()


def test_avazu_bad_inputs_name_file_and_line(tmp_path: Path) -> None:
    bad_header = _write_avazu(tmp_path / "h.csv", AVAZU_ROWS, header=AVAZU_HEADER[1:])
    with pytest.raises(DatasetError, match=r"h\.csv:1: expected Avazu's train header"):
        list(stream_avazu(bad_header, 10))
    short = _write_avazu(tmp_path / "s.csv", [AVAZU_ROWS[0], "1,0,14102100,1005"])
    with pytest.raises(DatasetError, match=r"s\.csv:3: expected 24 fields"):
        list(stream_avazu(short, 10))
    bad_hex = _write_avazu(tmp_path / "x.csv", [AVAZU_ROWS[0].replace("1fbe01fe", "zzz")])
    with pytest.raises(DatasetError, match=r"x\.csv:2: invalid literal"):
        list(stream_avazu(bad_hex, 10))
    bad_hour = _write_avazu(tmp_path / "t.csv", [AVAZU_ROWS[0].replace("14102100", "14102125")])
    with pytest.raises(DatasetError, match=r"t\.csv:2: hour of day 25"):
        list(stream_avazu(bad_hour, 10))
    bad_label = _write_avazu(tmp_path / "y.csv", [AVAZU_ROWS[1].replace(",1,1410", ",2,1410")])
    with pytest.raises(DatasetError, match=r"y\.csv:2: click must be 0 or 1"):
        list(stream_avazu(bad_label, 10))


def test_avazu_streams_chunks_before_reading_the_rest(tmp_path: Path) -> None:
    path = _write_avazu(tmp_path / "late.csv", [*AVAZU_ROWS, *AVAZU_ROWS, "garbage"])
    chunks = stream_avazu(path, chunk_rows=2)
    assert next(chunks).labels.tolist() == [0, 1]  # the first chunk comes before line 6 is read
    assert next(chunks).x.shape == (2, 24)
    with pytest.raises(DatasetError, match=r"late\.csv:6: expected 24 fields"):
        next(chunks)


def test_truncated_files_are_refused_with_the_line(tmp_path: Path) -> None:
    full = _write_avazu(tmp_path / "full.gz", AVAZU_ROWS * 200)
    cut = tmp_path / "cut.gz"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(DatasetError, match=r"cut\.gz:\d+: unreadable after line \d+ \(truncated"):
        list(stream_avazu(cut, 64))
    text = tmp_path / "cut.csv"
    text.write_text(",".join(AVAZU_HEADER) + "\n" + AVAZU_ROWS[0] + "\n" + AVAZU_ROWS[1][:50])
    with pytest.raises(DatasetError, match=r"cut\.csv:3: the last line has no newline"):
        list(stream_avazu(text, 64))


def _write_kdd(path: Path, rows: list[list[int]]) -> Path:
    path.write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))
    return path


def test_kdd12_label_is_any_click_and_fields_follow(tmp_path: Path) -> None:
    rows = [
        [0, 1, 4298118681424644510, 7686695, 385, 3, 3, 1601, 5521, 7709, 576, 490234],
        [2, 3, 4860571499428580850, 21560664, 37484, 2, 2, 2255103, 317, 48989, 44771, 490234],
        [1, 1, 9704320783495875564, 21748480, 36759, 3, 3, 4532751, 60721, 685038, 29681, 0],
    ]
    path = _write_kdd(tmp_path / "training.txt", rows)
    chunks = list(stream_kdd12(path, chunk_rows=2))
    assert [c.x.shape for c in chunks] == [(2, 11), (1, 11)] and len(KDD12_FIELDS) == 11
    assert np.concatenate([c.labels for c in chunks]).tolist() == [0, 1, 1]
    x = np.concatenate([c.x for c in chunks])
    assert x.tolist() == [[v % (1 << 63) for v in r[1:]] for r in rows]  # 64-bit URL hash


def test_kdd12_bad_lines_name_file_and_line(tmp_path: Path) -> None:
    ok = [0, 1, 2, 3, 4, 1, 1, 5, 6, 7, 8, 9]
    more_clicks = _write_kdd(tmp_path / "c.txt", [ok, [3, 1, *ok[2:]]])
    with pytest.raises(DatasetError, match=r"c\.txt:2: 3 clicks exceed 1 impressions"):
        list(stream_kdd12(more_clicks, 10))
    (tmp_path / "n.txt").write_text("\t".join(map(str, ok)) + "\n0\t1\tabc\n")
    with pytest.raises(DatasetError, match=r"n\.txt:2: expected 12 fields"):
        list(stream_kdd12(tmp_path / "n.txt", 10))
    (tmp_path / "v.txt").write_text("\t".join(["x", *map(str, ok[1:])]) + "\n")
    with pytest.raises(DatasetError, match=r"v\.txt:1: invalid literal"):
        list(stream_kdd12(tmp_path / "v.txt", 10))
    with pytest.raises(ValueError, match="chunk_rows"):
        list(stream_kdd12(tmp_path / "v.txt", 0))


def test_field_vocab_counts_over_chunks_and_maps_rare_values_to_oov() -> None:
    x = np.array([[5, 1], [5, 2], [7, 2], [9, 2], [5, 3], [7, 1]])
    vocab = FieldVocab(2)
    for chunk in (x[:2], x[2:5], x[5:]):  # counts merge across chunks
        vocab.update(chunk)
    assert vocab.values[0].tolist() == [5, 7, 9] and vocab.counts[0].tolist() == [3, 2, 1]
    kept = vocab.kept(threshold=2)
    assert [k.tolist() for k in kept] == [[5, 7], [1, 2]]
    enc = vocab.encode(np.array([[5, 1], [9, 3], [7, 2], [100, 0]]), kept)
    assert enc.tolist() == [[1, 1], [0, 0], [2, 2], [0, 0]]
    with pytest.raises(ValueError, match="shape"):
        vocab.update(np.zeros((3, 3), np.int64))
    with pytest.raises(ValueError, match="threshold"):
        vocab.kept(0)


def _write_ml1m(path: Path, ratings: str, users: str | None = None) -> Path:
    users = users or "1::F::1::10::48067\n2::M::56::16::70072-1234\n3::M::25::15::55117\n"
    movies = (
        "1::Toy Story (1995)::Animation|Children's|Comedy\n"
        "2::Jumanji (1995)::Adventure\n"
        "3::Caf\xe9 au lait (1993)::Drama\n"
    )
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ml-1m/users.dat", users.encode("latin-1"))
        zf.writestr("ml-1m/movies.dat", movies.encode("latin-1"))
        zf.writestr("ml-1m/ratings.dat", ratings.encode("latin-1"))
    return path


def test_movielens_1m_ctr_and_implicit_feedback(tmp_path: Path) -> None:
    ratings = "1::1::5::978300760\n1::2::3::978302109\n2::3::4::978298413\n3::1::1::978300000\n"
    ml = load_movielens_1m(_write_ml1m(tmp_path / "ml-1m.zip", ratings))
    assert ml.ratings[:, 3].tolist() == sorted(ml.ratings[:, 3].tolist())  # time order
    assert ml.ratings[0].tolist() == [2, 3, 4, 978298413]
    y, x = ml.ctr(positive_min=4)
    assert x.shape == (4, len(MOVIELENS_FIELDS))
    assert y.tolist() == [1, 0, 1, 0]
    # user 2: male, age 56, occupation 16, second distinct zip (first five characters)
    assert x[0, :6].tolist() == [2, 3, 1, 56, 16, 1]
    assert ml.genres[1] == (1 << 2) | (1 << 3) | (1 << 4)  # Animation, Children's, Comedy
    assert ml.implicit(positive_min=4).tolist() == [[2, 3, 978298413], [1, 1, 978300760]]
    with pytest.raises(ValueError, match="positive_min"):
        ml.ctr(positive_min=6)


def test_movielens_bad_archives_name_member_and_line(tmp_path: Path) -> None:
    bad = _write_ml1m(tmp_path / "a.zip", "1::1::5::978300760\n1::2::9::978302109\n")
    with pytest.raises(DatasetError, match=r"a\.zip:ml-1m/ratings\.dat:2: rating must be 1\.\.5"):
        load_movielens_1m(bad)
    cut = _write_ml1m(tmp_path / "b.zip", "1::1::5::978300760\n1::2::3")
    with pytest.raises(DatasetError, match=r"ratings\.dat:2: the last line has no newline"):
        load_movielens_1m(cut)
    unknown = _write_ml1m(tmp_path / "c.zip", "9::1::5::978300760\n")
    with pytest.raises(DatasetError, match=r"ratings\.dat:1: user 9 or movie 1 is not in"):
        load_movielens_1m(unknown)
    gender = _write_ml1m(tmp_path / "d.zip", "1::1::5::1\n", users="1::X::1::10::48067\n")
    with pytest.raises(DatasetError, match=r"users\.dat:1: gender must be F or M"):
        load_movielens_1m(gender)
    (tmp_path / "e.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DatasetError, match=r"e\.zip: not a readable zip archive"):
        load_movielens_1m(tmp_path / "e.zip")
    with zipfile.ZipFile(tmp_path / "f.zip", "w") as zf:
        zf.writestr("ml-1m/users.dat", "")
    with pytest.raises(DatasetError, match=r"f\.zip: no member ml-1m/movies\.dat"):
        load_movielens_1m(tmp_path / "f.zip")


def _write_mmrec(tmp: Path, rows: list[tuple[int, int, int]], n_items: int) -> tuple[Path, ...]:
    inter = tmp / "baby.inter"
    inter.write_text(
        "userID\titemID\trating\ttimestamp\tx_label\n"
        + "".join(f"{u}\t{i}\t5.0\t1400000000\t{s}\n" for u, i, s in rows)
    )
    rng = np.random.default_rng(0)
    np.save(tmp / "image_feat.npy", rng.normal(size=(n_items, 8)).astype(np.float32))
    np.save(tmp / "text_feat.npy", rng.normal(size=(n_items, 6)))
    return inter, tmp / "image_feat.npy", tmp / "text_feat.npy"


def test_mmrec_splits_features_and_cold_start_filter(tmp_path: Path) -> None:
    rows = [(0, 0, 0), (0, 1, 0), (1, 2, 0), (0, 3, 1), (1, 1, 2), (2, 0, 2), (2, 3, 1)]
    data = load_mmrec(*_write_mmrec(tmp_path, rows, n_items=4))
    assert (data.n_users, data.n_items) == (3, 4)
    assert data.train.tolist() == [[0, 0], [0, 1], [1, 2]]
    assert data.val.tolist() == [[0, 3]]  # user 2 has no training interaction: dropped
    assert data.test.tolist() == [[1, 1]]
    assert data.image.shape == (4, 8) and data.text.shape == (4, 6)
    assert data.text.dtype == np.float32


def test_mmrec_bad_files_are_named(tmp_path: Path) -> None:
    inter, image, text = _write_mmrec(tmp_path, [(0, 0, 0), (0, 1, 3)], n_items=2)
    with pytest.raises(DatasetError, match=r"baby\.inter:3: ids must be >= 0 and x_label"):
        load_mmrec(inter, image, text)
    inter, image, text = _write_mmrec(tmp_path, [(0, 0, 0), (0, 4, 1)], n_items=2)
    with pytest.raises(DatasetError, match=r"image_feat\.npy: expected \(5 items, d\)"):
        load_mmrec(inter, image, text)
    inter.write_text("userID\titem\tx_label\n0\t0\t0\n")
    with pytest.raises(DatasetError, match=r"baby\.inter:1: header lacks column\(s\) \['itemID'\]"):
        load_mmrec(inter, image, text)
    inter, image, text = _write_mmrec(tmp_path, [(0, 0, 0), (0, 1, 1)], n_items=2)
    np.save(text, np.array([{"a": 1}, {"b": 2}], dtype=object), allow_pickle=True)
    with pytest.raises(DatasetError, match=r"text_feat\.npy: not a readable \.npy"):
        load_mmrec(inter, image, text)  # pickled arrays are never loaded
    np.save(text, np.array([[0.0], [np.nan]]))
    with pytest.raises(DatasetError, match=r"text_feat\.npy: features must be finite"):
        load_mmrec(inter, image, text)


def test_pinned_file_rules_and_unpinned_listing(tmp_path: Path) -> None:
    unused = PinnedFile(dir="data/avazu", file="", sha256="")
    assert unpinned(unused, "s.mini.data.avazu") == []  # a profile that reads no such file
    placed = PinnedFile(dir="data/avazu", file="train.gz", sha256="")
    assert unpinned(placed, "s.full.data.avazu") == [
        "s.full.data.avazu.sha256: SHA-256 of your copy of train.gz"
    ]
    ml = PinnedFile(dir="data/ml", file="ml-1m.zip", sha256="")
    assert MOVIELENS_1M.sha256 in unpinned(ml, "s")[0]  # the known public pin is suggested
    for bad in (
        PinnedFile(dir="data", file="../train.gz", sha256=""),
        PinnedFile(dir="../elsewhere", file="train.gz", sha256=""),
        PinnedFile(dir="data", file="train.gz", sha256="ABC"),
        PinnedFile(dir="data", file="ml-1m.zip", sha256="0" * 64),  # not the public file's
    ):
        with pytest.raises(ParamsError):
            validate(bad, "s")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "train.gz").write_bytes(b"abc")
    good = PinnedFile(dir="d", file="train.gz", sha256=hashlib.sha256(b"abc").hexdigest())
    assert good.path(tmp_path) == tmp_path / "d" / "train.gz"
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        PinnedFile(dir="d", file="train.gz", sha256="1" * 64).path(tmp_path)
    with pytest.raises(DownloadError, match="pin your copy"):
        placed.path(tmp_path)


def test_read_ctr_takes_the_first_rows_of_every_source(tmp_path: Path) -> None:
    """One entry point for the CTR logs: the first n rows in file order, ids >= 0, labels 0/1;
    the streamed sources read no more chunks than the rows asked for need."""
    avazu = _write_avazu(tmp_path / "train.gz", AVAZU_ROWS * 3)
    x, y = read_ctr("avazu", avazu, 5)
    assert x.shape == (5, len(AVAZU_FIELDS)) and x.dtype == np.int64 and x.min() >= 0
    assert y.tolist() == [0, 1, 0, 1, 0] and y.dtype == np.float32
    kdd = _write_kdd(tmp_path / "training.txt", [[0, 1, *range(10)], [2, 3, *range(10)]] * 2)
    x, y = read_ctr("kdd12", kdd, 3)
    assert x.shape == (3, len(KDD12_FIELDS)) and y.tolist() == [0, 1, 0]
    ratings = "1::1::5::978300760\n1::2::3::978302109\n2::3::4::978298413\n"
    ml = _write_ml1m(tmp_path / "ml-1m.zip", ratings)
    x, y = read_ctr("movielens", ml, 3, positive_min=4)
    assert x.shape == (3, len(MOVIELENS_FIELDS)) and y.tolist() == [1, 1, 0]
    seen: list[str] = []
    read_ctr("avazu", avazu, 2, seen.append)
    assert seen == ["train.gz: 2 rows"]  # one chunk of the two rows asked for
    with pytest.raises(DatasetError, match="6 rows, the split needs 7"):
        read_ctr("avazu", avazu, 7)
    with pytest.raises(ValueError, match="unknown CTR source"):
        read_ctr("criteo_tb", avazu, 2)
