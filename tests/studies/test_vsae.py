"""vsae (Baker & Li, arXiv 2509.22994): worlds, arms, claims, config and full-profile loaders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from subspacelab.api import Metrics
from subspacelab.config import ParamsError, study_config
from subspacelab.studies.vsae import core, full
from subspacelab.studies.vsae.config import VsaeConfig
from subspacelab.studies.vsae.study import STUDY
from tests.helpers import tiny_params


def test_arms_always_hold_the_claim_arms_and_the_sweep_adds_the_variants() -> None:
    core_arms = core.make_arms([0.1, 1.0], [0.03], 1.0, 1 / 32, sweep=False)
    assert [a.name for a in core_arms] == ["topk_auxk", "vsae", "vsae_auxk"]
    assert core_arms[1].sae.variance == "fixed" and core_arms[1].sae.aux_alpha == 0
    assert core_arms[2].sae.aux_alpha == core_arms[0].sae.aux_alpha == 1 / 32
    names = [a.name for a in core.make_arms([0.1, 1.0], [0.01, 0.03], 1.0, 1 / 32, sweep=True)]
    assert names[3:] == ["topk", "fixed_c0p1", "learned_c0p01", "learned_c0p03"]
    with pytest.raises(ValueError, match="repeat"):
        core.make_arms([0.1, 0.1], [], 1.0, 1 / 32, sweep=True)


def test_superposition_streams_have_the_spec_statistics() -> None:
    dirs = core.true_directions(64, 8, 0)
    assert torch.allclose(dirs.norm(dim=1), torch.ones(64))
    iid = core.Superposition(dirs, 0.05, 1, 0.0, seed=1)
    assert iid.batch(0, 30).shape == (30, 8)
    # the same batch index gives the same rows; another purpose other rows
    assert torch.equal(iid.batch(3, 10), iid.batch(3, 10))
    assert not torch.equal(iid.batch(3, 10), iid.batch(3, 10, purpose=core.EVAL))
    grouped = core.Superposition(torch.eye(8), 0.1, 4, 0.0, seed=2)
    act = grouped.batch(0, 20000) > 0  # one-hot directions: activity is visible
    assert act.float().mean(0).sub(0.1).abs().max() < 0.01  # the marginal stays p
    same = (act[:, 0] & act[:, 1]).float().mean()
    other = (act[:, 0] & act[:, 4]).float().mean()
    assert same > 3 * other  # features of a group co-occur (½·2p ≫ p²)
    with pytest.raises(ValueError, match="group_size"):
        core.Superposition(torch.eye(6), 0.1, 4, 0.0, seed=0)


def test_resample_draws_training_and_held_out_rows_apart() -> None:
    train, held = torch.zeros(5, 2), torch.ones(3, 2)
    r = core.Resample(train, held, seed=0)
    assert r.batch(0, 7).sum() == 0 and r.batch(0, 7, purpose=core.EVAL).sum() == 14
    steps = core.StepBatches([r, r], steps=4, rows=3)
    assert len(steps) == 4 and steps[1][0].shape == (2, 3, 2)


def test_sentences_are_distinct_and_seeded() -> None:
    a = core.sentences(300, 0)
    assert len(set(a)) == 300 and a == core.sentences(300, 0) and a != core.sentences(300, 1)
    assert all(s[0].isupper() for s in a)


class _Tok:
    def __call__(self, texts: list[str], **kw: object) -> _Enc:
        n = max(len(t.split()) for t in texts) + 2
        ids = torch.zeros(len(texts), n, dtype=torch.long)
        mask = torch.zeros_like(ids)
        special = torch.ones_like(ids)
        for i, t in enumerate(texts):
            words = len(t.split())
            mask[i, : words + 2] = 1
            special[i, 1 : words + 1] = 0
            ids[i, 1 : words + 1] = torch.arange(1, words + 1)
        return _Enc(input_ids=ids, attention_mask=mask, special_tokens_mask=special)


class _Enc(dict):
    def to(self, device: object) -> _Enc:
        return self


class _Model:
    def __call__(self, input_ids: torch.Tensor, **kw: object) -> object:
        h = input_ids.float()[..., None].expand(-1, -1, 3)
        return type("Out", (), {"hidden_states": (h, 10 * h)})()


def test_token_states_keep_real_tokens_of_the_chosen_layer() -> None:
    out = core.token_states(
        _Tok(), _Model(), ["a b c", "d e"], layer=1, context=8, batch_size=1,
        max_tokens=100, device=torch.device("cpu"),
    )  # fmt: skip
    assert out[:, 0].tolist() == [10.0, 20.0, 30.0, 10.0, 20.0]
    capped = core.token_states(
        _Tok(), _Model(), ["a b c", "d e"], layer=0, context=8, batch_size=1,
        max_tokens=4, device=torch.device("cpu"),
    )  # fmt: skip
    assert capped.shape == (4, 3)
    with pytest.raises(ValueError, match="layer 2"):
        core.token_states(
            _Tok(), _Model(), ["a"], layer=2, context=8, batch_size=1, max_tokens=10,
            device=torch.device("cpu"),
        )  # fmt: skip


def test_read_texts_formats(tmp_path: Path) -> None:
    import zstandard

    lines = [json.dumps({"text": "first doc", "meta": {}}), "", json.dumps({"text": "second"})]
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    assert full.read_texts(tmp_path / "a.jsonl", 10) == ["first doc", "second"]
    assert full.read_texts(tmp_path / "a.jsonl", 1) == ["first doc"]
    raw = ("\n".join(lines) + "\n").encode()
    (tmp_path / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(raw))
    assert full.read_texts(tmp_path / "a.jsonl.zst", 10) == ["first doc", "second"]
    (tmp_path / "b.txt").write_text("one line\n\ntwo\n")
    assert full.read_texts(tmp_path / "b.txt", 10) == ["one line", "two"]
    (tmp_path / "bad.jsonl").write_text('{"title": "x"}\n')
    with pytest.raises(ValueError, match="line 1"):
        full.read_texts(tmp_path / "bad.jsonl", 10)
    (tmp_path / "c.csv").write_text("x\n")
    with pytest.raises(ValueError, match="want one of"):
        full.read_texts(tmp_path / "c.csv", 10)


@pytest.mark.parametrize(
    ("section", "change", "field"),
    [
        ("data", {"sweep": ["correlated"], "settings": ["iid"]}, "sweep"),
        ("model", {"k": 100}, "k"),
        ("data", {"backbone": "pythia", "text_file": ""}, "text_file"),
    ],
)
def test_config_errors_name_the_field(section: str, change: dict, field: str) -> None:
    params = tiny_params(["vsae"])
    params["vsae"]["mini"][section].update(change)
    with pytest.raises(ParamsError, match=field):
        study_config(VsaeConfig, params, "vsae", "mini")


def test_full_profile_declares_its_pins() -> None:
    cfg = study_config(VsaeConfig, tiny_params(["vsae"]), "vsae", "full")
    assert cfg.data.backbone == "pythia" and cfg.model.dict_size == 8192
    assert set(cfg.data.unpinned()) == {"revision", "text_sha256"}


def _m(
    vsae: dict[str, list[float]], topk: dict[str, list[float]], aux_dead: list[float]
) -> Metrics:
    values: dict[str, list[float]] = {}
    for world in ("iid", "correlated"):
        for q in ("fvu", "dead", "abs_cos"):
            values[f"{world}/vsae/{q}"] = vsae[q]
            values[f"{world}/topk_auxk/{q}"] = topk[q]
        values[f"{world}/vsae_auxk/dead"] = aux_dead
    return Metrics(values)


def test_claims_hold_fail_and_are_inconclusive() -> None:
    checks = {c.id: c.check for c in STUDY.claims}
    topk = {"fvu": [0.27, 0.28, 0.26], "dead": [0.0, 0.01, 0.0], "abs_cos": [0.10, 0.11, 0.10]}
    good = _m(
        {"fvu": [0.36, 0.37, 0.35], "dead": [0.45, 0.40, 0.42], "abs_cos": [0.09, 0.1, 0.09]},
        topk,
        [0.3, 0.32, 0.31],
    )
    bad = _m(
        {"fvu": [0.27, 0.28, 0.26], "dead": [0.0, 0.02, 0.01], "abs_cos": [0.12, 0.13, 0.12]},
        topk,
        [0.0, 0.01, 0.0],
    )
    unsure = _m(
        {"fvu": [0.20, 0.36, 0.31], "dead": [0.0, 0.3, 0.08], "abs_cos": [0.13, 0.08, 0.10]},
        topk,
        [0.0, 0.3, 0.05],
    )
    for cid in ("r1_fvu", "r2_dead", "r3_independence", "r4_confound"):
        assert checks[cid](good).verdict == "holds", cid
        assert checks[cid](bad).verdict == "does not hold", cid
        assert checks[cid](unsure).verdict == "inconclusive", cid
