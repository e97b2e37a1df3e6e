"""molrg_diffusion's full profile on tiny inputs: the U-Net (a 2-level net on 8x8 grids, a few
joint-trained steps), the generalisation score, the safetensors loader of a tiny fake
checkpoint, the DDPM schedule, the Jacobian and its numerical rank, the config's pins."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

from subspacelab.api import ModelFileError, ParamsError, sha256_file
from subspacelab.config import study_config, unpinned
from subspacelab.io import NonFiniteError
from subspacelab.nets.training import LocalEnv
from subspacelab.studies.molrg_diffusion import full
from subspacelab.studies.molrg_diffusion.config import MolrgDiffusionConfig, UNetConfig
from subspacelab.worlds import lowrank
from tests.helpers import REPO

SLUG = "molrg_diffusion"


def _world(n: int = 128, nk: int = 6) -> dict[str, torch.Tensor]:
    w = lowrank.molrg(n, [2, 2], [nk, nk], seed=[0], subspaces="orthogonal", noise=0.0)
    return {"w_x": torch.from_numpy(w.x), "w_truth": torch.from_numpy(w.stacked())}


def test_unet_keeps_the_image_shape_and_preconditions() -> None:
    torch.manual_seed(0)
    x = _world()["w_x"].float()
    model = full.MoLRGUNet(x, resolution=8, width=8, levels=2, sigmas=(0.01, 10.0))
    assert model.shape == (2, 8, 8)
    out = model(x[:5], torch.full((5,), 0.5))
    assert out.shape == (5, 128)
    # at tiny σ, c_skip -> 1 and c_out -> 0: D(x, σ) ≈ x
    tiny = model(x[:3], torch.full((3,), 1e-6))
    torch.testing.assert_close(tiny, x[:3], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="not channels x 3²"):
        full.MoLRGUNet(x, resolution=3, width=8, levels=1, sigmas=(0.01, 10.0))


def _unet_cfg(resolution: int = 8) -> UNetConfig:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    cfg = study_config(MolrgDiffusionConfig, params, SLUG, "full").unet
    assert cfg is not None
    cfg.resolution, cfg.width, cfg.levels, cfg.steps = resolution, 8, 2, 3
    cfg.samples, cfg.sample_steps = 16, 4
    return cfg


def test_unet_scores_train_jointly_and_sample(tmp_path: Path) -> None:
    torch.manual_seed(0)
    other = _world(nk=4)  # another point count: the two U-Nets are stacked with padding
    worlds = _world() | {"v_x": other["w_x"], "v_truth": other["w_truth"]}
    scores = full.unet_scores(LocalEnv(), _unet_cfg(), worlds, ["w", "v"], seed=0)
    for key in ("w", "v"):
        assert set(scores[key]) == {"on", "copy", "score"}
        assert all(0.0 <= v <= 1.0 for v in scores[key].values())


def _models(counts: tuple[int, ...] = (5, 9, 2), n: int = 48) -> list[full.MoLRGUNet]:
    """Per-model U-Nets on (3, 4, 4) worlds of different point counts, in float64."""
    gen = torch.Generator().manual_seed(7)
    torch.manual_seed(0)
    return [
        full.MoLRGUNet(torch.randn(c, n, generator=gen), 4, 8, 2, (0.002, 80.0)).double()
        for c in counts
    ]


def _draws(gen: torch.Generator, g: int, nmax: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    sigma = torch.empty(g, nmax, dtype=torch.float64).uniform_(-6.0, 4.0, generator=gen).exp()
    return sigma, torch.randn(g, nmax, n, generator=gen, dtype=torch.float64)


def test_stacked_unets_losses_and_gradients_equal_the_per_model_ones() -> None:
    models = _models()
    stack = full.StackedUNets(models).double()
    sigma, noise = _draws(torch.Generator().manual_seed(1), 3, 9, 48)
    losses = stack.losses(sigma, noise)
    losses.sum().backward()
    for g, model in enumerate(models):
        n = len(model.x)
        want = model.loss(sigma[g, :n], noise[g, :n])
        want.backward()
        torch.testing.assert_close(losses[g], want, rtol=1e-12, atol=0.0)
    scale = max(float(p.grad.abs().max()) for m in models for p in m.parameters())
    names = [name for name, _ in models[0].net.named_parameters()]
    assert [name for name, _ in stack.net.named_parameters()] == names
    for name, p in stack.net.named_parameters():
        for g, model in enumerate(models):
            q = model.net.get_parameter(name)
            torch.testing.assert_close(p[g], q, rtol=0.0, atol=0.0)  # the same initial values
            torch.testing.assert_close(p.grad[g], q.grad, rtol=1e-9, atol=1e-12 * scale)


def test_one_adam_over_stacked_parameters_is_independent_adams() -> None:
    models = _models()
    stack = full.StackedUNets(models).double()
    opts = [torch.optim.Adam(m.parameters(), lr=0.01) for m in models]
    stacked_opt = torch.optim.Adam(stack.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(2)
    for _ in range(4):
        sigma, noise = _draws(gen, 3, 9, 48)
        stacked_opt.zero_grad()
        stack.losses(sigma, noise).sum().backward()
        stacked_opt.step()
        for g, (model, opt) in enumerate(zip(models, opts, strict=True)):
            n = len(model.x)
            opt.zero_grad()
            model.loss(sigma[g, :n], noise[g, :n]).backward()
            opt.step()
    for name, p in stack.net.named_parameters():
        for g, model in enumerate(models):
            torch.testing.assert_close(p[g], model.net.get_parameter(name), rtol=1e-9, atol=1e-9)


def test_stacked_sampling_equals_per_model_sampling() -> None:
    models = _models()
    stack = full.StackedUNets(models).double()
    got = stack.sample(6, 5, torch.Generator().manual_seed(3))
    assert got.shape == (3, 6, 48) and got.dtype == torch.float64
    for g, model in enumerate(models):
        want = model.sample(6, 5, torch.Generator().manual_seed(3))
        torch.testing.assert_close(got[g], want, rtol=1e-10, atol=1e-10)


def test_stack_unets_keeps_the_loop_s_initial_weights_per_shape() -> None:
    gen = torch.Generator().manual_seed(4)
    keys, counts, dims = ["a", "b", "c"], [5, 9, 3], [48, 192, 48]
    worlds = {
        f"{k}_x": torch.randn(c, n, generator=gen)
        for k, c, n in zip(keys, counts, dims, strict=True)
    }
    cfg = _unet_cfg(resolution=4)
    torch.manual_seed(5)
    loop = [full.MoLRGUNet(worlds[f"{k}_x"], 4, 8, 2, (0.002, 80.0)) for k in keys]
    torch.manual_seed(5)
    stacks = full.stack_unets(cfg, worlds, keys)
    assert {shape: names for shape, (names, _) in stacks.items()} == {
        (3, 4, 4): ["a", "c"],
        (12, 4, 4): ["b"],
    }
    for names, stack in stacks.values():
        for g, key in enumerate(names):
            model = loop[keys.index(key)]
            for name, t in stack.net.state_dict().items():
                torch.testing.assert_close(t[g], model.net.state_dict()[name], rtol=0, atol=0)
            assert float(stack.sigma_data[g]) == model.sigma_data
            assert float(stack.counts[g]) == len(model.x)
    with pytest.raises(ValueError, match="image shape"):
        full.StackedUNets(loop)
    with pytest.raises(ValueError, match="at least one model"):
        full.StackedUNets([])
    other = full.MoLRGUNet(worlds["a_x"], 4, 16, 2, (0.002, 80.0))
    with pytest.raises(ValueError, match="architecture differs"):
        full.StackedUNets([loop[0], other])


def test_a_diverged_unet_is_named_by_its_world() -> None:
    models = [m.float() for m in _models()]
    stacks = [
        (["s0_a", "s0_b"], full.StackedUNets(models[:2])),
        (["s0_c"], full.StackedUNets(models[2:])),
    ]
    with torch.no_grad():
        stacks[0][1].net.out[2].bias[1, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"worlds \['s0_b'\] diverged"):
        full.train_unets(LocalEnv(), stacks, lr=0.01, steps=2, seed=0)


def test_generalisation_score_known_answers() -> None:
    truth = np.zeros((2, 4, 1))
    truth[0, 0, 0] = truth[1, 1, 0] = 1.0  # span(e1) and span(e2) in R^4
    train = np.array([[1.0, 0, 0, 0], [0, 2.0, 0, 0]])
    samples = np.array(
        [
            [1.0, 0, 0, 0],  # on, a copy of train[0]
            [-1.5, 0, 0, 0],  # on, new (distances 2.5 vs 2.5)
            [0, 0, 1.0, 0],  # off
            [1.0, 1.0, 0, 0],  # off (residual 1/√2 of its norm)
        ]
    )
    got = full.generalisation(samples, truth, train, delta=0.1)
    assert got == {"on": 0.5, "copy": 0.25, "score": 0.25}
    one = full.generalisation(samples[:2], truth, train[:1], delta=0.1)
    assert one["copy"] == 1.0 and one["score"] == 0.0  # one training point: all copies


def _checkpoint(tmp_path: Path) -> tuple[torch.nn.Module, Path, str]:
    torch.manual_seed(1)
    net = full.UNet(3, 8, 2)
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return net, path, sha256_file(path)


def test_safetensors_checkpoint_loads_only_when_pinned_and_matching(tmp_path: Path) -> None:
    net, path, sha = _checkpoint(tmp_path)
    torch.manual_seed(2)
    loaded = full.load_safetensors(full.UNet(3, 8, 2), path, sha)
    x, c = torch.randn(2, 3, 8, 8), torch.zeros(2)
    torch.testing.assert_close(loaded(x, c), net.eval()(x, c))
    with pytest.raises(ModelFileError, match="SHA-256"):
        full.load_safetensors(full.UNet(3, 8, 2), path, "0" * 64)
    with pytest.raises(ModelFileError, match="not this model's checkpoint"):
        full.load_safetensors(full.UNet(3, 8, 3), path, sha)
    with pytest.raises(ModelFileError, match="has shape"):
        full.load_safetensors(full.UNet(3, 16, 2), path, sha)
    pickled = tmp_path / "model.pkl"
    torch.save(net.state_dict(), pickled)
    with pytest.raises(ModelFileError, match="no pickles"):
        full.load_safetensors(net, pickled, sha256_file(pickled))
    with pytest.raises(ModelFileError, match="no such file"):
        full.load_safetensors(net, tmp_path / "absent.safetensors", sha)


def test_ddpm_schedule_and_denoiser(tmp_path: Path) -> None:
    cfg = tmp_path / "scheduler_config.json"
    cfg.write_text(
        json.dumps({"beta_start": 0.0001, "beta_end": 0.02, "num_train_timesteps": 1000})
    )
    abar = full.ddpm_alphas_cumprod(cfg)
    assert abar.shape == (1000,) and abar[0] == pytest.approx(0.9999)
    assert float(abar[-1]) == pytest.approx(4.04e-5, rel=0.01)  # DDPM's ᾱ_T
    cfg.write_text(json.dumps({"beta_schedule": "squaredcos_cap_v2"}))
    with pytest.raises(ValueError, match="not linear"):
        full.ddpm_alphas_cumprod(cfg)
    cfg.write_text(json.dumps({"beta_start": 0.0001}))
    with pytest.raises(ValueError, match="no beta_end"):
        full.ddpm_alphas_cumprod(cfg)
    # a perfect ε-predictor for a known x0 returns x0
    x0, eps = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    a = 0.7
    xt = a**0.5 * x0 + (1 - a) ** 0.5 * eps
    den = full.ddpm_denoiser(lambda x, t: eps, a, 5)
    torch.testing.assert_close(den(xt), x0)


def test_jacobian_and_numerical_rank_of_a_low_rank_map() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(48, 3, generator=gen, dtype=torch.float64)
    lin = a @ torch.randn(3, 48, generator=gen, dtype=torch.float64)  # rank 3

    def f(x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) @ lin.T).view(x.shape) + 0.1 * x.flatten(1).sin().view(x.shape) ** 2

    x = torch.randn(3, 4, 4, dtype=torch.float64, generator=gen)
    jac = full.jacobian(f, x, chunk=7)
    want = torch.autograd.functional.jacobian(lambda v: f(v[None])[0].flatten(), x).reshape(48, 48)
    torch.testing.assert_close(jac, want)
    s = torch.linalg.svdvals(lin)
    assert full.numerical_rank(s, 0.999) == 3
    assert full.numerical_rank(torch.tensor([3.0, 1.0, 0.0]), 0.5) == 1
    assert full.numerical_rank(torch.tensor([1.0, 1.0, 1.0, 1.0]), 0.99) == 4


def test_full_profile_lists_the_checkpoint_pins_and_checks_the_unet() -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    cfg = study_config(MolrgDiffusionConfig, params, SLUG, "full")
    assert [p.split(":")[0] for p in unpinned(cfg, f"{SLUG}.full")] == [
        f"{SLUG}.full.jacobian.hf_revision",
        f"{SLUG}.full.jacobian.weights_sha256",
    ]
    mini = study_config(MolrgDiffusionConfig, params, SLUG, "mini")
    assert mini.unet is None and mini.jacobian is None
    for over, match in (
        ({"ambient": [96]}, "unet"),  # 6 x 4 x 4, but not a world of the grid
        ({"ambient": [50]}, "ambient"),
        ({"levels": 4}, "levels"),
        ({"sigma_min": 100.0}, "sigma_min"),
    ):
        bad = yaml.safe_load((REPO / "params.yaml").read_text())
        bad[SLUG]["full"]["world"]["ambient"] = [48, 192]
        bad[SLUG]["full"]["unet"].update(over)
        with pytest.raises(ParamsError, match=match):
            study_config(MolrgDiffusionConfig, bad, SLUG, "full")
