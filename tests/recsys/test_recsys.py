"""The recommendation toolkit against known answers (subspacelab.recsys)."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from subspacelab.recsys import (
    auc,
    bucket,
    collision_rate,
    ctr_log,
    full_ranking,
    iter_batches,
    log_loss,
    multiplexed,
    per_field,
    salted_hash,
    split_budget,
    unified,
)
from subspacelab.recsys.hashing import expected_collision_rate, splitmix64
from subspacelab.recsys.logs import MISSING_INT, bucketise_counts, stream_criteo


def test_splitmix64_reference_values() -> None:
    # the published sequence of splitmix64 seeded with 0: state += golden, then the finaliser
    out = splitmix64(np.array([0, 0x9E3779B97F4A7C15], dtype=np.uint64))
    assert int(out[0]) == 0xE220A8397B1DCDAF
    assert int(out[1]) == 0x6E789E6AA1B965F4


def test_hash_is_stable_salted_and_uniform() -> None:
    v = np.arange(100_000)
    a, b = salted_hash(v, 3), salted_hash(v, 4)
    assert np.array_equal(a, salted_hash(v.copy(), 3))  # no per-process salt
    assert (a != b).mean() > 0.999  # salts give independent functions
    counts = np.bincount(bucket(v, 7, 64), minlength=64)
    # chi-square of a uniform hash over 64 buckets: 63 dof, the 99.9 % quantile is ~103
    chi2 = ((counts - v.size / 64) ** 2 / (v.size / 64)).sum()
    assert chi2 < 103


def test_collision_rate_matches_the_birthday_formula() -> None:
    rate = collision_rate(np.arange(2000), 1, 4096)
    assert rate == pytest.approx(expected_collision_rate(2000, 4096), abs=0.03)
    assert collision_rate(np.arange(10), 1, 1) == 1.0
    assert collision_rate(np.array([5, 5, 5]), 1, 2) == 0.0  # one distinct value: no collision


def test_hash_refuses_bad_ids() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        salted_hash(np.array([-1, 2]), 0)
    with pytest.raises(TypeError, match="integer"):
        salted_hash(np.array([0.5]), 0)
    with pytest.raises(ValueError, match="buckets"):
        bucket(np.arange(3), 0, 0)


def test_auc_known_answers_and_sklearn() -> None:
    from sklearn.metrics import roc_auc_score

    assert auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert auc([0, 1], [0.5, 0.5]) == 0.5  # ties count half
    rng = np.random.default_rng(0)
    y, s = rng.random(500) < 0.3, rng.normal(size=500).round(1)
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    with pytest.raises(ValueError, match="both"):
        auc([1, 1], [0.1, 0.2])


def test_log_loss_known_answer() -> None:
    assert log_loss([1, 0], [0.5, 0.5]) == pytest.approx(math.log(2))


def test_ndcg_recall_of_a_perfect_and_a_known_ranking() -> None:
    # 2 users, 5 items; user 0 trained on item 0, tests items 1 and 2; user 1 tests item 4 only
    train = np.array([[0, 0], [1, 1]])
    test = np.array([[0, 1], [0, 2], [1, 4]])
    perfect = torch.tensor([[9.0, 5, 4, 0, 0], [0, 9, 0, 0, 5]])  # train items score highest
    out = full_ranking(perfect, train, test, ks=(1, 2))
    assert out["ndcg@2"] == pytest.approx(1.0) and out["recall@2"] == pytest.approx(1.0)
    assert out["recall@1"] == pytest.approx((0.5 + 1.0) / 2)
    # user 0 ranks its test items 2nd and 3rd behind item 3; user 1 ranks item 4 first
    known = torch.tensor([[0.0, 3, 2, 4, 0], [0, 0, 0, 0, 1]])
    out = full_ranking(known, train, test, ks=(3,))
    dcg0 = 1 / math.log2(3) + 1 / math.log2(4)
    idcg0 = 1 + 1 / math.log2(3)
    assert out["ndcg@3"] == pytest.approx((dcg0 / idcg0 + 1.0) / 2)
    assert out["recall@3"] == pytest.approx(1.0)


def test_full_ranking_skips_users_without_test_items_and_checks_k() -> None:
    scores = torch.zeros(3, 4)
    out = full_ranking(scores, np.empty((0, 2)), np.array([[2, 1]]), ks=(4,))
    assert out["recall@4"] == 1.0
    with pytest.raises(ValueError, match="exceeds"):
        full_ranking(scores, np.empty((0, 2)), np.array([[2, 1]]), ks=(5,))


def test_ctr_log_has_its_truth() -> None:
    log = ctr_log(20_000, 6, (10, 2000), 1.1, 2, 4, 0.25, seed=0, signal_value_frac=0.3)
    assert log.x.shape == (20_000, 6) and set(np.unique(log.y)) == {0.0, 1.0}
    assert abs(log.y.mean() - 0.25) < 0.02
    assert all(10 <= v <= 2000 for v in log.vocab)
    assert log.signal_fields == (True,) * 4 + (False,) * 2
    assert not log.signal_values[5].any() and 0.2 < log.signal_values[0].mean() < 0.4
    assert (log.x.max(axis=0) < np.array(log.vocab)).all()
    # Zipf: the most frequent value of a field is id 0
    assert np.bincount(log.x[:, 0]).argmax() == 0
    # the Bayes scorer beats chance; the noise field alone carries nothing
    assert auc(log.y, log.logits) > 0.7
    # per-value click rates learned on one half predict the other: a signal field does, a noise
    # field does not (out of sample, so rare values' in-sample rates cannot fake it)
    a, b = slice(0, 10_000), slice(10_000, None)
    for field, low, high in ((0, 0.53, 1.0), (5, 0.47, 0.53)):
        v = log.x[:, field]
        n = np.bincount(v[a], minlength=log.vocab[field])
        rate = (np.bincount(v[a], weights=log.y[a], minlength=log.vocab[field]) + 0.25) / (n + 1)
        assert low < auc(log.y[b], rate[v[b]]) < high
    same = ctr_log(20_000, 6, (10, 2000), 1.1, 2, 4, 0.25, seed=0, signal_value_frac=0.3)
    assert np.array_equal(same.x, log.x) and np.array_equal(same.y, log.y)
    train, test = log.split((15_000, 5_000))
    assert train.x.shape[0] == 15_000 and np.array_equal(test.x, log.x[15_000:])


def test_ctr_log_refuses_bad_sizes() -> None:
    with pytest.raises(ValueError, match="vocab_range"):
        ctr_log(10, 3, (1, 5), 1.1, 1, 2, 0.2, 0)
    with pytest.raises(ValueError, match="n_noise"):
        ctr_log(10, 3, (2, 5), 1.1, 3, 2, 0.2, 0)


def test_batches_cover_each_row_once_without_touching_global_rng() -> None:
    state = np.random.get_state()[1].copy()
    batches = iter_batches(10, 4, seed=1)
    assert sorted(np.concatenate(batches).tolist()) == list(range(10))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert np.array_equal(np.random.get_state()[1], state)


def test_schemes_count_parameters_and_route_rows() -> None:
    x = np.array([[0, 1, 2], [5, 6, 7]])
    pf = per_field([4, 8, 16], dim=8)
    assert pf.n_params == 28 * 8 and pf.widths == (8, 8, 8)
    rows = pf.lookup_rows(x)
    assert (rows[:, 0] < 4).all() and ((rows[:, 1] >= 4) & (rows[:, 1] < 12)).all()
    mx = multiplexed(3, 32, dim=8)
    assert mx.n_params == 256 and (mx.lookup_rows(x) < 32).all()
    ue = unified([2, 1, 1], tables=2, rows_per_table=16, chunk_dim=4)
    assert ue.n_params == 2 * 16 * 4 and ue.widths == (8, 4, 4)
    r = ue.lookup_rows(x)  # chunks round-robin: (f0,j0)->t0, (f0,j1)->t1, f1->t0, f2->t1
    assert r.shape == (2, 4)
    assert (r[:, 0] < 16).all() and (r[:, 1] >= 16).all()
    assert (r[:, 2] < 16).all() and (r[:, 3] >= 16).all()
    emb = ue.module()
    out = emb(torch.from_numpy(r))
    assert out.shape == (2, 16)
    assert sum(p.numel() for p in emb.parameters()) == ue.n_params
    assert split_budget(100, [10, 30, 60], "vocab") == [10, 30, 60]
    assert split_budget(100, [10, 30, 60], "equal") == [33, 33, 33]
    with pytest.raises(ValueError, match="shape"):
        mx.lookup_rows(np.zeros((2, 2), dtype=np.int64))


def _criteo_line(label: int, ints: list[str], cats: list[str]) -> str:
    return "\t".join([str(label), *ints, *cats]) + "\n"


def test_criteo_stream_reads_chunks_in_constant_memory(tmp_path: Path) -> None:
    ints = ["1", "", "-1", "5", "0", "2", "3", "", "100", "7", "1", "0", "4"]
    cats = ["68fd1e64", "", *["0000000a"] * 24]
    lines = [_criteo_line(i % 2, ints, cats) for i in range(5)]
    path = tmp_path / "day_0.gz"
    with gzip.open(path, "wt") as fh:
        fh.writelines(lines)
    chunks = list(stream_criteo(path, chunk_rows=2))
    assert [c.labels.shape[0] for c in chunks] == [2, 2, 1]
    first = chunks[0]
    assert first.labels.tolist() == [0.0, 1.0]
    assert first.ints[0, 1] == MISSING_INT and first.ints[0, 2] == -1
    assert first.cats[0, 0] == 0x68FD1E64 + 1 and first.cats[0, 1] == 0
    ids = bucketise_counts(first.ints)
    assert (ids >= 0).all() and ids[0, 1] == 0 and ids[0, 2] == 1 and ids[0, 0] == 3
    assert ids[0, 8] == int(math.log(100) ** 2) + 5


def test_criteo_stream_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(_criteo_line(1, ["1"] * 13, ["a"] * 26) + "1\t2\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: expected 40"):
        list(stream_criteo(path, chunk_rows=10))
    path.write_text(_criteo_line(3, ["1"] * 13, ["a"] * 26))
    with pytest.raises(ValueError, match="label must be 0 or 1"):
        list(stream_criteo(path, chunk_rows=10))
