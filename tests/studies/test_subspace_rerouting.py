"""subspace_rerouting (arXiv 2503.06269): the token language, the toy transformer and its cached
suffix pass, the interventions, the toy SSR, the config's refusals (no suffix step with a real
model), the claims both ways, and the full profile's loaders on tiny stand-ins."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from subspacelab.api import Metrics
from subspacelab.config import ParamsError, study_config, unpinned
from subspacelab.representation import directions as D
from subspacelab.studies.subspace_rerouting import core, full
from subspacelab.studies.subspace_rerouting.config import (
    HfModel,
    HfPrompts,
    SubspaceReroutingConfig,
)
from subspacelab.studies.subspace_rerouting.study import STUDY, fit_directions
from tests.helpers import tiny_params

LANG = core.Language(vocab=40, n_restricted=5, min_len=3, max_len=6)
RESTRICTED = set(LANG.restricted_ids().tolist())


def _model(layers: int = 2, seed: int = 0) -> core.ToyTransformer:
    torch.manual_seed(seed)
    return core.ToyTransformer(LANG.vocab, 16, 2, layers, 32, LANG.seq_len).eval()


def test_instructions_are_labelled_by_their_restricted_tokens() -> None:
    g = torch.Generator().manual_seed(0)
    instr, labels = core.instructions(LANG, 300, 0.5, 2, g)
    for x, y in zip(instr, labels.tolist(), strict=True):
        assert LANG.min_len <= len(x) <= LANG.max_len
        assert y == int(any(t in RESTRICTED for t in x.tolist()))
        assert min(x.tolist()) >= core.FIRST_RESTRICTED  # no special token inside
    assert 0.35 < labels.float().mean() < 0.65


def test_contrastive_pairs_differ_by_one_restricted_token() -> None:
    pos, neg = core.contrastive_pairs(LANG, 50, torch.Generator().manual_seed(1), max_len=4)
    for p, n in zip(pos, neg, strict=True):
        assert len(p) == len(n) <= 4
        diff = (p != n).nonzero().flatten().tolist()
        assert len(diff) == 1 and p[diff[0]].item() in RESTRICTED
        assert not any(t in RESTRICTED for t in n.tolist())


def test_training_sequences_and_prompts_by_hand() -> None:
    x = [torch.tensor([30, 31, 32]), torch.tensor([33, 7, 34])]
    tokens, targets = core.training_sequences(x, torch.tensor([0, 1]), LANG)
    B, S, E, R, C, P, N = core.BOS, core.SEP, core.EOS, core.REFUSE, core.COMPLY, core.PAD, -100
    assert tokens[0, :10].tolist() == [B, 30, 31, 32, S, C, 30, 31, 32, E]
    assert targets[0, :10].tolist() == [N, N, N, N, C, 30, 31, 32, E, N]
    assert tokens[1, :7].tolist() == [B, 33, 7, 34, S, R, E]
    assert targets[1, :7].tolist() == [N, N, N, N, R, E, N]
    assert tokens.shape == (2, LANG.seq_len) and (tokens[1, 7:] == P).all()
    rows, sep = core.prompts([x[0], torch.tensor([35])], torch.tensor([[20, 21], [22, 23]]))
    assert rows.tolist() == [[B, 30, 31, 32, 20, 21, S], [B, 35, 22, 23, S, P, P]]
    assert sep.tolist() == [6, 4]


def test_language_errors() -> None:
    with pytest.raises(ValueError, match="no room"):
        core.Language(vocab=10, n_restricted=4, min_len=1, max_len=2)
    with pytest.raises(ValueError, match="min_len"):
        core.Language(vocab=40, n_restricted=4, min_len=3, max_len=2)


def test_residual_points_hooks_and_padding() -> None:
    m = _model()
    tokens, sep = core.prompts([torch.tensor([30, 31, 32]), torch.tensor([33, 34, 35, 36, 37])])
    logits, stream = m.run(m.embed(tokens))
    assert len(stream) == m.n_layers + 1
    torch.testing.assert_close(logits, m.unembed(m.ln_f(stream[-1])))
    # an identity hook changes nothing; right padding after SEP does not reach SEP
    torch.testing.assert_close(m(tokens, lambda _l, x: x), m(tokens))
    alone, s0 = core.prompts([torch.tensor([30, 31, 32])])
    torch.testing.assert_close(
        core.residuals(m, alone, s0)[:, 0], core.residuals(m, tokens, sep)[:, 0]
    )
    # a hook sees the residual of its point before the next block uses it
    seen: list[int] = []
    m(tokens, lambda layer, x: seen.append(layer) or x)
    assert seen == [0, 1, 2]


def test_cached_suffix_pass_equals_the_full_forward() -> None:
    m = _model(layers=3)
    instr = [torch.tensor([30, 31, 32]), torch.tensor([33, 34, 35, 36, 37, 38])]
    suffix = torch.tensor([[20, 21, 22], [23, 24, 25]])
    tokens, sep = core.prompts(instr, suffix)
    whole = core.residuals(m, tokens, sep)
    heads = [torch.cat([torch.tensor([core.BOS]), x]) for x in instr]
    pre = torch.nn.utils.rnn.pad_sequence(heads, batch_first=True)
    tail = torch.cat([suffix, torch.full((2, 1), core.SEP)], 1)
    with torch.no_grad():
        stream = m.run_after(m.prefix_cache(pre, 2), torch.tensor([4, 7]), m.embed(tail))
    for layer in range(3):
        torch.testing.assert_close(stream[layer][:, -1], whole[layer], atol=1e-5, rtol=0)


def test_ablation_hook_leaves_no_component_at_any_point() -> None:
    m = _model()
    tokens, _ = core.prompts([torch.tensor([30, 31, 32, 33])])
    dirs = core.random_directions(3, 16, torch.Generator().manual_seed(2))
    hook = core.steering_hook(dirs, -1.0)
    seen = []

    def record(layer: int, x: torch.Tensor) -> torch.Tensor:
        out = hook(layer, x)
        seen.append((out @ dirs[layer]).abs().max().item())
        return out

    m(tokens, record)
    assert max(seen) < 1e-5
    # a zero direction (no difference in means) is no intervention
    zero = core.steering_hook(torch.zeros(3, 16), -1.0)
    torch.testing.assert_close(m(tokens, zero), m(tokens))


def test_logit_lens_rank_of_an_unembedding_row() -> None:
    m = _model()
    assert core.logit_lens_rank(m, m.unembed.weight[core.REFUSE] * 50, core.REFUSE) == 0


def test_fit_directions_on_a_planted_direction() -> None:
    g = torch.Generator().manual_seed(3)
    u = torch.zeros(8)
    u[0] = 1.0
    neg = torch.randn(3, 300, 8, generator=g)
    pos = torch.randn(3, 300, 8, generator=g) + 12.0 * u
    pos[0] = neg[0]  # point 0 carries no difference
    tensors, res = fit_directions(pos, neg, pos.clone(), neg.clone(), 200, 0.05, 0)
    assert res["acc"][1] == res["acc"][2] == 1.0
    assert res["acc"][0] == 0.5
    torch.testing.assert_close(tensors["r_hat"][0], torch.zeros(8))
    assert min(res["abs_cos"][1:]) > 0.8
    assert res["cross_cos"][1][2] > 0.95


def _ssr_setup() -> tuple[core.ToyTransformer, D.Probes, list[torch.Tensor], torch.Tensor]:
    m = _model(layers=2, seed=4)
    g = torch.Generator().manual_seed(5)
    probes = D.Probes(torch.randn(3, 16, generator=g), torch.zeros(3))
    instr = [torch.tensor([30, 7, 31]), torch.tensor([32, 33, 8, 34])]
    return m, probes, instr, torch.tensor([[20, 21, 22], [23, 24, 25]])


def test_ssr_lowers_the_probe_loss_with_allowed_tokens_only() -> None:
    m, probes, instr, init = _ssr_setup()
    allowed = torch.arange(15, 40)
    settings = core.SSRSettings(32, 8, 4, 3, 8, 0.0)
    res = core.ssr_attack(m, probes, [1, 2], instr, init, allowed, settings, torch.Generator())
    assert all(b <= a + 1e-6 for a, b in zip(res.trace, res.trace[1:], strict=False))
    assert set(res.suffix.flatten().tolist()) <= set(allowed.tolist())
    assert res.iters.tolist() == [8, 8]
    tokens, sep = core.prompts(instr, res.suffix)
    with torch.no_grad():
        again = core.probe_loss(m, probes, [1, 2], m.embed(tokens), sep)
    torch.testing.assert_close(again, res.loss, atol=1e-4, rtol=0)  # cached loss = full loss
    assert (
        res.loss
        < core.probe_loss(
            m, probes, [1, 2], m.embed(core.prompts(instr, init)[0]), core.prompts(instr, init)[1]
        ).detach()
    ).any()


def test_ssr_stops_at_the_early_stop_loss_and_refuses_other_models() -> None:
    m, probes, instr, init = _ssr_setup()
    settings = core.SSRSettings(8, 4, 2, 2, 5, 1e6)
    res = core.ssr_attack(
        m, probes, [1], instr, init, torch.arange(15, 40), settings, torch.Generator()
    )
    assert res.iters.tolist() == [0, 0]
    torch.testing.assert_close(res.suffix, init)
    with pytest.raises(TypeError, match="ToyTransformer only"):
        core.ssr_attack(
            torch.nn.Linear(2, 2),
            probes,
            [1],
            instr,
            init,
            init,
            settings,  # type: ignore[arg-type]
            torch.Generator(),
        )


def _params() -> dict:
    return tiny_params(["subspace_rerouting"])


def _hf() -> dict:
    return {
        "name": "org/model",
        "revision": "abc",
        "dtype": "float32",
        "batch_size": 2,
        "chat_template": True,
    }


def test_config_refuses_the_suffix_step_with_a_real_model() -> None:
    params = _params()
    mini = params["subspace_rerouting"]["mini"]
    mini["model"]["hf"] = _hf()
    mini["data"]["prompts"] = {"path": "pairs.jsonl", "sha256": "0" * 64}
    with pytest.raises(ParamsError, match=r"suffix.*toy model only"):
        study_config(SubspaceReroutingConfig, params, "subspace_rerouting", "mini")
    mini["suffix"] = None
    cfg = study_config(SubspaceReroutingConfig, params, "subspace_rerouting", "mini")
    assert cfg.suffix is None


def test_the_full_profile_has_no_suffix_and_declares_its_pins() -> None:
    cfg = study_config(SubspaceReroutingConfig, _params(), "subspace_rerouting", "full")
    assert cfg.suffix is None and cfg.model.hf is not None
    missing = unpinned(cfg, "subspace_rerouting.full")
    assert any("revision" in x for x in missing) and any("sha256" in x for x in missing)


@pytest.mark.parametrize(
    ("section", "change", "field"),
    [
        ("suffix", {"target_layers": [9]}, "suffix"),
        ("data", {"attack_max_len": 11}, "suffix"),
        ("data", {"attack_max_len": 13}, "attack_max_len"),
        ("model", {"heads": 3}, "heads"),
        ("data", {"prompts": {"path": "x", "sha256": ""}}, "model"),
    ],
)
def test_config_errors_name_the_field(section: str, change: dict, field: str) -> None:
    params = _params()
    params["subspace_rerouting"]["mini"][section].update(change)
    with pytest.raises(ParamsError, match=field):
        study_config(SubspaceReroutingConfig, params, "subspace_rerouting", "mini")


def _metrics(
    acc: list[float],
    cos: list[float],
    abl: list[float],
    ssr: list[float],
    ctrl: float = 0.0,
    toy: bool = True,
) -> Metrics:
    n = len(acc)
    m: dict[str, list[float]] = {
        "deep/probe/min_acc": acc,
        "deep/shuffled/max_acc": [0.5 + ctrl] * n,
        "deep/probe/min_abs_cos": cos,
        "layer0/probe/acc": [0.5] * n,
        "layer0/probe/abs_cos_rhat": [0.0] * n,
    }
    if toy:
        m |= {
            "ablation/rhat/flip": abl,
            "ablation/random/flip": [ctrl] * n,
            "steering/rhat/flip": abl,
            "steering/random/flip": [0.0] * n,
            "ssr/probe_loss/flip": ssr,
            "ssr/random_suffix/flip": [ctrl] * n,
            "ssr/probe_loss/probe_flip": ssr,
            "ssr/probe_loss/iters": [10.0] * n,
        }
    return Metrics(m)


def test_claims_hold_fail_and_are_inconclusive() -> None:
    checks = {c.id: c.check for c in STUDY.claims}
    good = _metrics([0.99, 0.98, 1.0], [0.9, 0.88, 0.92], [0.9, 0.95, 1.0], [0.9, 0.88, 0.92])
    bad = _metrics([0.8, 0.82, 0.85], [0.5, 0.6, 0.55], [0.1, 0.0, 0.2], [0.1, 0.2, 0.0])
    unsure = _metrics([0.99, 0.90, 0.97], [0.95, 0.6, 0.9], [1.0, 0.5, 0.95], [1.0, 0.5, 0.9])
    for cid in checks:
        assert checks[cid](good).verdict == "holds", cid
        assert checks[cid](bad).verdict == "does not hold", cid
        assert checks[cid](unsure).verdict == "inconclusive", cid
    # the controls can fail a claim on their own
    leaky = _metrics(
        [0.99, 0.98, 1.0], [0.9, 0.88, 0.92], [0.9, 0.95, 1.0], [0.9, 0.88, 0.92], ctrl=0.4
    )
    for cid in ("probe_separates", "ablation_flips", "ssr_flips"):
        assert checks[cid](leaky).verdict == "does not hold", cid


def test_toy_only_claims_are_inconclusive_without_the_toy_metrics() -> None:
    checks = {c.id: c.check for c in STUDY.claims}
    m = _metrics([0.99, 0.98, 1.0], [0.9, 0.88, 0.92], [], [], toy=False)
    assert checks["probe_separates"](m).verdict == "holds"
    for cid in ("ablation_flips", "ssr_flips"):
        result = checks[cid](m)
        assert result.verdict == "inconclusive"
        assert "toy model only" in result.tests[0].name


# ---------------------------------------------------------------- full profile on stand-ins


def _pairs_file(tmp_path: Path) -> HfPrompts:
    rows = [
        {"id": i, "positive": f"alpha item {i} beta", "negative": f"alpha item {i} gamma"}
        for i in range(6)
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return HfPrompts(str(path), hashlib.sha256(path.read_bytes()).hexdigest())


def test_pairs_are_read_only_against_their_pin(tmp_path: Path) -> None:
    prompts = _pairs_file(tmp_path)
    pairs = full.read_pairs(prompts)
    assert pairs[2] == ("alpha item 2 beta", "alpha item 2 gamma")
    with pytest.raises(ValueError, match="does not match"):
        full.read_pairs(HfPrompts(prompts.path, "0" * 64))
    with pytest.raises(ValueError, match="pin the SHA-256"):
        full.read_pairs(HfPrompts(prompts.path, ""))
    with pytest.raises(FileNotFoundError):
        full.read_pairs(HfPrompts(str(tmp_path / "none.jsonl"), "0" * 64))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"positive": "a"}) + "\n")
    with pytest.raises(ValueError, match="negative"):
        full.read_pairs(HfPrompts(str(bad), hashlib.sha256(bad.read_bytes()).hexdigest()))
    train, test = full.split_pairs(6, 3, 2, seed=0)
    assert len(train) == 3 and len(test) == 2 and not set(train) & set(test)
    with pytest.raises(ValueError, match="the file has 6"):
        full.split_pairs(6, 5, 2, seed=0)


def _tiny_chat_model(tmp_path: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = [
        "<pad>",
        "<unk>",
        "<s>",
        "</s>",
        "<user>",
        "<assistant>",
        "alpha",
        "beta",
        "gamma",
        "item",
        *[str(i) for i in range(10)],
    ]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    tok.chat_template = (
        "{% for m in messages %}<user> {{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    torch.manual_seed(0)
    conf = LlamaConfig(
        vocab_size=len(words),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    out = tmp_path / "tiny-chat"
    LlamaForCausalLM(conf).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_last_token_states_of_a_tiny_chat_model(tmp_path: Path) -> None:
    where = _tiny_chat_model(tmp_path)
    hf = HfModel(str(where), "main", "float32", 2, True)
    tok, model = full.load_model(hf, torch.device("cpu"))
    assert full.format_prompt(tok, "alpha 1", True) == "<user> alpha 1 <assistant>"
    texts = ["alpha item 1 beta", "gamma", "alpha 2 3 4 5 6 beta"]
    states = full.last_token_states(model, tok, texts, batch_size=3, chat_template=True)
    assert states.shape == (3, 3, 16)  # (layers + 1, n, d)
    # left padding with position ids: each prompt gives what it gives alone
    for i, t in enumerate(texts):
        alone = full.last_token_states(model, tok, [t], batch_size=1, chat_template=True)
        torch.testing.assert_close(states[:, i], alone[:, 0], atol=1e-5, rtol=0)
    # the embedding point is the last token's (the generation prompt's) embedding
    emb = model.get_input_embeddings().weight[tok.convert_tokens_to_ids("<assistant>")]
    torch.testing.assert_close(states[0, 0], emb)
