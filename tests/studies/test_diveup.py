"""diveup (arXiv 2603.13571): the experts' pathologies, the COM field, the consensus target,
the metrics against known answers, the claims both ways and the config's errors."""

from __future__ import annotations

import pytest
import torch

from subspacelab.api import Metrics
from subspacelab.config import ParamsError, study_config
from subspacelab.studies.diveup import core
from subspacelab.studies.diveup.config import DiveupConfig
from subspacelab.studies.diveup.study import ARMS, EXPERTS, STUDY
from tests.helpers import tiny_params


def _expert(pathology: str) -> core.Expert:
    torch.manual_seed(0)
    return core.Expert(16, 8, pathology).eval()


def _feats(e: core.Expert, x: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return e.features(
            x,
            spike_prob=0.2,
            spike_norm=8.0,
            blur_sigma=1.0,
            generator=torch.Generator().manual_seed(seed),
        )


def test_experts_tokens_and_pathologies() -> None:
    x = torch.rand(2, 3, 32, 32)
    clean, mask = _feats(_expert("clean"), x)
    assert clean.shape == (2, 16, 4, 4) and not mask.any()
    spiky, mask = _feats(_expert("spikes"), x)
    assert mask.any() and torch.equal(
        spiky[~mask[:, None].expand_as(spiky)], clean[~mask[:, None].expand_as(clean)]
    )
    s = core.spikiness(spiky)
    assert (s[mask] > 5).all() and (s[~mask] < 5).all()
    # the shifted expert is the clean one on the image moved 4 px down and right
    shifted, _ = _feats(_expert("shift"), x)
    moved = torch.nn.functional.pad(x, (4, 0, 4, 0), mode="replicate")[..., :32, :32]
    torch.testing.assert_close(shifted, _feats(_expert("clean"), moved)[0])
    blurred, _ = _feats(_expert("blur"), x)
    torch.testing.assert_close(blurred, core.gaussian_blur(clean, 1.0))
    assert _expert("clean").denoise(x).shape == x.shape
    with pytest.raises(ValueError, match="pathology"):
        core.Expert(16, 8, "noise")


def test_gaussian_blur_keeps_constants_and_averages() -> None:
    c = torch.full((1, 2, 6, 6), 2.0)
    torch.testing.assert_close(core.gaussian_blur(c, 1.5), c)
    x = torch.randn(1, 3, 8, 8)
    assert core.gaussian_blur(x, 1.0).var() < x.var()
    assert core.gaussian_blur(x, 0.0) is x


def test_com_field_points_into_the_region() -> None:
    """Two constant halves: at a boundary cell the COM points into its own half; a uniform map
    gives 0 inside and points inwards at the border only by the window's truncation."""
    f = torch.zeros(1, 2, 6, 6)
    f[:, 0, :, :3] = 1.0
    f[:, 1, :, 3:] = 1.0
    com = core.com_field(f, 1, 0.05)
    assert com[0, 1, 2, 2] < -0.4 and com[0, 1, 2, 3] > 0.4  # dx at the boundary columns
    torch.testing.assert_close(com[0, 0, 2:4], torch.zeros(2, 6), atol=1e-5, rtol=0)
    flat = core.com_field(torch.ones(1, 3, 5, 5), 1, 0.1)
    torch.testing.assert_close(flat[0, :, 2, 2], torch.zeros(2))
    torch.testing.assert_close(flat[0, :, 0, 0], torch.tensor([0.5, 0.5]))


def test_consensus_drops_spiky_experts() -> None:
    ones, twos, threes = (torch.full((1, 2, 4, 4), v) for v in (1.0, 2.0, 3.0))
    calm, spike = torch.ones(1, 4, 4), torch.ones(1, 4, 4)
    spike[0, 0, 0] = 10.0
    out = core.consensus_com([ones, twos, threes], [spike, calm, calm], 1, 3.0)
    torch.testing.assert_close(out[0, :, 0, 0], torch.full((2,), 2.5))  # A left out near it
    torch.testing.assert_close(out[0, :, 3, 3], torch.full((2,), 2.0))  # the mean far away
    # everyone spiky: the least spiky one
    worse = spike * 2
    out = core.consensus_com([ones, twos], [spike, worse], 1, 3.0)
    torch.testing.assert_close(out[0, :, 0, 0], torch.ones(2))


def test_probe_miou_and_boundaries() -> None:
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, :, 4:] = 1
    conf = core.confusion(labels, labels, 3)
    assert core.miou(conf) == 1.0 and conf.sum() == 64
    half = labels.clone()
    half[0, :4, 4:] = 0  # half of class 1 predicted 0: IoU 0.5 and 32/48
    assert core.miou(core.confusion(half, labels, 3)) == pytest.approx((0.5 + 32 / 48) / 2)
    counts = core.boundary_counts(labels, labels, 0)
    assert core.boundary_f1(counts) == 1.0 and counts[1] == 16
    shifted = torch.zeros_like(labels)
    shifted[0, :, 5:] = 1
    assert core.boundary_f1(core.boundary_counts(shifted, labels, 0)) == pytest.approx(0.5)
    assert core.boundary_f1(core.boundary_counts(shifted, labels, 1)) == 1.0
    # the ridge probe recovers a linear labelling exactly
    x = torch.randn(200, 3)
    y = (x[:, 0] > 0).long()
    rows = torch.cat([x.double(), torch.ones(200, 1, dtype=torch.float64)], 1)
    onehot = torch.nn.functional.one_hot(y, 2).double()
    w = core.ridge_probe(rows.T @ rows, rows.T @ onehot, 0.0)
    assert ((rows @ w).argmax(1) == y).float().mean() > 0.9
    # a large common offset changes neither the penalty nor the predictions (centred ridge)
    shifted = rows.clone()
    shifted[:, :3] += 100.0
    w2 = core.ridge_probe(shifted.T @ shifted, shifted.T @ onehot, 0.01)
    w1 = core.ridge_probe(rows.T @ rows, rows.T @ onehot, 0.01)
    torch.testing.assert_close(shifted @ w2, rows @ w1)
    assert core.with_bias(torch.ones(1, 2, 3, 3)).shape == (9, 3)


def test_spike_ratio() -> None:
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, 1, 1] = True
    ring = core.spike_ring(mask, 2)
    assert ring.sum() == 8 * 4 and not ring[0, 2:4, 2:4].any()
    up = torch.ones(1, 3, 8, 8)
    assert core.spike_ratio(up, mask).tolist() == [1.0]
    up[0, :, 2, 4] = 5.0  # spread into the token to the right
    assert core.spike_ratio(up, mask).item() == pytest.approx(5.0)
    assert core.spike_ratio(up, torch.zeros_like(mask)).numel() == 0


def _m(d: list[list[float]], a: list[list[float]], r: list[list[float]]) -> Metrics:
    """Metrics from per-arm (bilinear, selfrecon, diveup) seeds: mIoU on D and A, spike
    ratio on A."""
    out = {}
    for k, arm in enumerate(ARMS):
        out[f"d_heldout/{arm}/miou"] = d[k]
        out[f"a_spikes/{arm}/miou"] = a[k]
        out[f"a_spikes/{arm}/spike_ratio"] = r[k]
    return Metrics(out)


def test_claims_hold_fail_and_are_inconclusive() -> None:
    checks = {c.id: c.check for c in STUDY.claims}
    base = [0.3, 0.31, 0.32]
    low, high = [0.40, 0.41, 0.42], [0.43, 0.44, 0.45]
    small, big = [1.5, 1.6, 1.7], [2.5, 2.6, 2.7]
    good = _m([base, low, high], [base, low, high], [big, big, small])
    bad = _m([base, high, low], [base, high, low], [big, small, big])
    unsure = _m(
        [base, low, [0.50, 0.38, 0.43]],
        [base, low, [0.50, 0.38, 0.43]],
        [big, small, [1.2, 1.9, 1.8]],
    )
    for cid in ("miou_heldout", "miou_source", "spikes_contained"):
        assert checks[cid](good).verdict == "holds", cid
        assert checks[cid](bad).verdict == "does not hold", cid
        assert checks[cid](unsure).verdict == "inconclusive", cid
    # +0.5 pt is not the +1 pt claimed
    near = _m([base, low, [v + 0.005 for v in low]], [base, low, high], [big, big, small])
    assert checks["miou_heldout"](near).verdict == "does not hold"
    # a ratio below 1 counts by its distance to 1
    under = _m([base, low, high], [base, low, high], [big, [1.1, 1.1, 1.1], [0.5, 0.5, 0.5]])
    assert checks["spikes_contained"](under).verdict == "does not hold"


def test_metric_names_cover_the_table() -> None:
    assert EXPERTS == ("a_spikes", "b_shift", "c_blur", "d_heldout")
    assert ARMS == ("bilinear", "selfrecon", "diveup")


@pytest.mark.parametrize(
    ("section", "change", "field"),
    [
        ("data", {"size": 60}, "size"),
        ("experts", {"widths": [32, 48, 64]}, "widths"),
        ("experts", {"widths": [32, 48, 64, 90]}, "widths"),
        ("model", {"kernel": 4}, "kernel"),
        ("model", {"dim": 40}, "dim"),
        ("train", {"crop": 20}, "train"),
        ("eval", {"probe_images": 10_000}, "eval"),
    ],
)
def test_config_errors_name_the_field(section: str, change: dict, field: str) -> None:
    params = tiny_params(["diveup"])
    params["diveup"]["mini"][section].update(change)
    with pytest.raises(ParamsError, match=field):
        study_config(DiveupConfig, params, "diveup", "mini")
