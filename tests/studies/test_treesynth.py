"""treesynth (arXiv 2503.17195): the renderer, the simulated LLM, the tree (exclusive and
exhaustive leaves, validator and retries, the infinite-node cap), the full profile's LLM client on
a fake server, the claims three ways and the config's errors."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from subspacelab.api import Metrics
from subspacelab.config import ParamsError, study_config
from subspacelab.studies.treesynth import core, full, study
from subspacelab.studies.treesynth.config import GeneratorConfig, TreesynthConfig
from subspacelab.studies.treesynth.study import STUDY
from tests.helpers import tiny_params


def _llm(seed: int = 0, *, exponent: float = 1.0, repeat: float = 0.0, fail: float = 0.0):
    rng = np.random.default_rng(seed)
    priors = [core.zipf_prior(len(d.values), exponent, rng) for d in core.WORLD]
    return core.SimulatedLLM(priors, repeat, 0.0, fail, 10, np.random.default_rng(seed + 1))


def test_render_gives_the_exact_answer_of_an_addition_chain() -> None:
    rng = np.random.default_rng(3)
    attrs = (0, 1, 0, 1, 3)  # add, 3 steps, shopping, medium, count
    text, answer = core.render(attrs, rng)
    numbers = [int(k) for k in re.findall(r"\d+", text)]
    assert len(numbers) == 4 and Fraction(answer) == sum(numbers)
    assert "grocery store" in text and "apples" in text
    again, _ = core.render(attrs, np.random.default_rng(3))
    assert again == text


def test_division_answers_stay_exact_fractions() -> None:
    _, answer = core.render((3, 4, 1, 0, 0), np.random.default_rng(0))  # div, 6 steps, small
    value = Fraction(answer)
    assert value > 0 and value.denominator >= 1


def test_universe_counts_the_combinations() -> None:
    assert len(core.universe([0, 1, 3, 4])) == 5 * 5 * 3 * 4
    assert core.universe([3]) == [(0,), (1,), (2,)]


def test_zipf_prior_is_a_permuted_power_law() -> None:
    p = core.zipf_prior(4, 1.0, np.random.default_rng(0))
    want = np.array([1, 1 / 2, 1 / 3, 1 / 4]) / (25 / 12)
    assert np.allclose(np.sort(p)[::-1], want) and p.sum() == pytest.approx(1.0)
    assert np.allclose(core.zipf_prior(5, 0.0, np.random.default_rng(0)), 0.2)


def test_simulated_generation_obeys_constraints_and_repeats() -> None:
    gen = _llm()
    out = gen.generate({0: (2,), 2: (1, 3)}, 50)
    assert all(s.attrs[0] == 2 and s.attrs[2] in (1, 3) for s in out)
    collapsed = _llm(repeat=0.95).generate({}, 100)
    assert len({s.text for s in collapsed}) < 20
    fresh = _llm(repeat=0.0).generate({}, 100)
    assert len({s.text for s in fresh}) > 90


def test_mutation_changes_exactly_one_attribute() -> None:
    gen = _llm()
    for s in gen.generate({}, 20):
        m = gen.mutate(s)
        assert sum(a != b for a, b in zip(s.attrs, m.attrs, strict=True)) == 1


def test_selection_takes_the_highest_entropy_unused_dimension() -> None:
    gen = _llm()
    samples = [core.Sample((0, 0, 0, i % 3, i % 2), "t", "0") for i in range(6)]
    dim, partition = gen.propose(samples, excluded=[])
    assert dim == 3 and partition == {0: [0, 3], 1: [1, 4], 2: [2, 5]}
    dim, _ = gen.propose(samples, excluded=[3])
    assert dim == 4


def test_validator_rejects_missing_repeated_and_empty_groups() -> None:
    assert core.valid_partition({0: [0, 2], 1: [1]}, 3)
    assert not core.valid_partition({0: [0], 1: [1]}, 3)
    assert not core.valid_partition({0: [0, 1], 1: [1, 2]}, 3)
    assert not core.valid_partition({0: [0, 1, 2], 1: []}, 3)


class _Ordered:
    """A fake generator: picks the lowest free dimension, valid partitions, full value sets."""

    def __init__(self, fail: bool = False) -> None:
        self.inner, self.fail = _llm(), fail

    def generate(self, constraints: core.Constraints, n: int) -> list[core.Sample]:
        return self.inner.generate(constraints, n)

    def propose(self, samples: Sequence[core.Sample], excluded: Sequence[int]):
        dim = min(d for d in range(len(core.WORLD)) if d not in excluded)
        if self.fail:
            return dim, {}
        part: dict[int, list[int]] = {}
        for i, s in enumerate(samples):
            part.setdefault(s.attrs[dim], []).append(i)
        return dim, part

    def expand(self, dim: int, seen: Sequence[int]) -> tuple[list[int], bool]:
        return self.inner.expand(dim, seen)


def test_tree_leaves_are_exclusive_and_exhaustive_and_infinite_nodes_have_one_child() -> None:
    gen = _Ordered()
    root, st = core.build_tree(gen, len(core.WORLD), 3, 10, 5)
    lv = core.leaves(root)
    # operation (5) x steps (5) x one child holding all 20 contexts
    assert len(lv) == 25 == st.leaves and st.nodes == 1 + 5 + 25 + 25
    assert {(lf.constraints[0], lf.constraints[1]) for lf in lv} == {
        ((a,), (b,)) for a in range(5) for b in range(5)
    }
    assert all(lf.constraints[2] == tuple(range(20)) and lf.infinite_on_path == 1 for lf in lv)
    pool = core.synthesise(gen, root, 10, 10, 100)
    assert len(pool) == 25 * 10 * 10
    capped = core.synthesise(gen, root, 10, 10, 3)  # the explicit cap on 10 ** k batches
    assert len(capped) == 25 * 3 * 10
    doc = core.tree_json(root)
    assert doc["dimension"] == "operation" and len(doc["children"]) == 5
    assert doc["children"][0]["children"][0]["children"][0]["constraints"]["context"][0] == (
        "shopping"
    )


def test_a_node_whose_partitions_all_fail_becomes_a_leaf_after_the_retries() -> None:
    root, st = core.build_tree(_Ordered(fail=True), len(core.WORLD), 4, 10, 5)
    assert root.children == [] and st.attempts == 5 and st.rejected == 5 and st.failed_nodes == 1


def test_simulated_failures_are_retried() -> None:
    gen = _llm(fail=0.5)
    _, st = core.build_tree(gen, len(core.WORLD), 2, 10, 5)
    assert st.rejected > 0 and st.attempts > st.rejected


def test_subsample_refuses_a_short_pool() -> None:
    pool = _llm().generate({}, 5)
    with pytest.raises(ValueError, match="fewer than the 10"):
        core.subsample(pool, 10, np.random.default_rng(0))


def test_baselines_have_the_requested_size() -> None:
    assert len(core.naive(_llm(), 23, 10)) == 23
    assert len(core.seed_evolution(_llm(), 23, 10)) == 23


def test_dataset_metrics_on_hand_rows() -> None:
    rows = [
        {"attrs": [0, 0, 0, 0, 0], "text": "a"},
        {"attrs": [0, 0, 5, 0, 0], "text": "a"},
        {"attrs": [1, 0, 0, 0, 0], "text": "b"},
        {"attrs": [1, 0, 1, 0, 0], "text": "c"},
    ]
    m = study.dataset_metrics(rows, np.eye(4))
    assert m["coverage"] == 2 / 300 and m["context_coverage"] == 3 / 20
    assert m["duplicates"] == 0.25 and m["vendi"] == pytest.approx(4.0)
    assert m["entropy"] == pytest.approx(np.log(2) / np.log(300))


def test_naive_coverage_falls_with_skew() -> None:
    curve = study.naive_coverage_curve((0.0, 1.0, 3.0), 2000, 0.3)
    assert curve[0]["coverage"] == pytest.approx(1 - (1 - 1 / 300) ** 1400)
    assert curve[0]["coverage"] > curve[1]["coverage"] > curve[2]["coverage"]


# the full profile's client, on a fake server


class _FakeServer:
    def __init__(self, replies: list[Any]) -> None:
        self.replies, self.requests = list(replies), []

    def __call__(self, url: str, payload: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        self.requests.append((url, payload, timeout_s))
        content = self.replies.pop(0)
        return {"choices": [{"message": {"content": content}}]}


_GEN = GeneratorConfig("http://127.0.0.1:8000/v1", "m", "abc", 1.0, 1.0, 0.7, 5.0)


def _client(replies: list[Any]) -> tuple[full.LLMGenerator, _FakeServer]:
    server = _FakeServer(replies)
    client = full.ChatClient(_GEN.endpoint, _GEN.model, _GEN.timeout_s, transport=server)
    return full.LLMGenerator(client, _GEN, 10, np.random.default_rng(0)), server


_LABEL = {"operation": "mul", "steps": "3", "context": "zoo", "numbers": "small", "unit": "count"}


def test_llm_generation_parses_problems_and_labels_them() -> None:
    problems = [{"problem": "p1", "answer": "6"}, {"problem": "p2", "answer": "8"}]
    gen, server = _client(
        ["Here you go:\n```json\n" + json.dumps(problems) + "\n```", json.dumps([_LABEL] * 2)]
    )
    out = gen.generate({0: (2,), 2: (9, 10)}, 2)
    assert [s.text for s in out] == ["p1", "p2"] and out[0].answer == "6"
    assert out[0].attrs == (2, 1, 9, 0, 3)
    url, payload, timeout = server.requests[0]
    assert url == "http://127.0.0.1:8000/v1/chat/completions" and timeout == 5.0
    assert payload["model"] == "m" and payload["temperature"] == 1.0
    assert "operation: mul" in payload["messages"][0]["content"]
    assert server.requests[1][1]["temperature"] == 0.0


def test_llm_propose_and_expand_map_onto_the_task_space() -> None:
    partition = {"dimension": "numbers", "partition": {"small": [0], "large": [1, 2]}}
    gen, _ = _client(
        [
            json.dumps(partition),
            json.dumps({"dimension": "operation", "partition": {}}),  # excluded
            json.dumps({"status": "complete", "values": ["small", "medium", "huge"]}),
            json.dumps({"status": "infinite", "values": ["zoo"]}),
        ]
    )
    samples = [core.Sample((0,) * 5, f"t{i}", "0") for i in range(3)]
    assert gen.propose(samples, [0]) == (3, {0: [0], 2: [1, 2]})
    assert gen.propose(samples, [0]) == (-1, {})  # an excluded dimension: the validator rejects
    assert gen.expand(3, [0, 2]) == ([0, 1, 2], False)
    assert gen.expand(2, [0]) == ([0, 9], True)


def test_llm_errors_are_named() -> None:
    with pytest.raises(ValueError, match="http"):
        full.ChatClient("file:///etc/passwd", "m", 1.0)
    with pytest.raises(ValueError, match="no JSON"):
        full.parse_json("sorry, I cannot")
    gen, _ = _client(['[{"problem": "p", "answer": "1"}]', json.dumps([_LABEL | {"unit": "kg"}])])
    with pytest.raises(ValueError, match="outside the task space"):
        gen.generate({}, 1)
    gen, _ = _client(['[{"problem": "p", "answer": "1"}]', json.dumps([_LABEL])])
    with pytest.raises(ValueError, match="asked the LLM for 2"):
        gen.generate({}, 2)


# claims


def _m(tree_cov: list[float], naive_cov: list[float], tree_v: list[float], tree_acc: list[float]):
    n = len(tree_cov)
    return Metrics(
        {
            "synth/treesynth/coverage": tree_cov,
            "synth/naive/coverage": naive_cov,
            "synth/evolution/coverage": [0.5] * n,
            "synth/treesynth/vendi": tree_v,
            "synth/naive/vendi": [10.0, 10.5, 9.8][:n],
            "synth/evolution/vendi": [11.0, 11.2, 10.9][:n],
            "synth/treesynth/acc": tree_acc,
            "synth/naive/acc": [0.70, 0.71, 0.69][:n],
        }
    )


def test_claims_hold_fail_and_are_inconclusive() -> None:
    checks = {c.id: c.check for c in STUDY.claims}
    good = _m([0.97, 0.98, 0.96], [0.40, 0.42, 0.41], [14.0, 14.5, 14.2], [0.80, 0.82, 0.81])
    assert {k: f(good).verdict for k, f in checks.items()} == dict.fromkeys(checks, "holds")
    bad = _m([0.97, 0.98, 0.96], [0.80, 0.82, 0.81], [9.0, 9.2, 8.9], [0.70, 0.71, 0.70])
    assert {k: f(bad).verdict for k, f in checks.items()} == dict.fromkeys(checks, "does not hold")
    low = _m([0.85, 0.98, 0.96], [0.40, 0.42, 0.41], [14.0, 14.5, 14.2], [0.80, 0.82, 0.81])
    assert checks["C1"](low).verdict == "does not hold"  # one seed under 0.9
    noisy = _m([0.97, 0.98, 0.96], [0.30, 0.60, 0.45], [8.0, 16.0, 12.0], [0.70, 0.85, 0.78])
    assert {k: f(noisy).verdict for k, f in checks.items()} == dict.fromkeys(checks, "inconclusive")


def test_config_errors_name_the_field() -> None:
    params = tiny_params(["treesynth"])
    params["treesynth"]["mini"]["data"]["sizes"] = [30, 500]
    with pytest.raises(ParamsError, match="sizes"):
        study_config(TreesynthConfig, params, "treesynth", "mini")
    params = tiny_params(["treesynth"])
    params["treesynth"]["mini"]["world"]["repeat"] = 1.0
    with pytest.raises(ParamsError, match="repeat"):
        study_config(TreesynthConfig, params, "treesynth", "mini")


def test_full_profile_needs_a_pinned_revision() -> None:
    cfg = study_config(TreesynthConfig, tiny_params(["treesynth"]), "treesynth", "full")
    assert cfg.generator is not None and list(cfg.unpinned()) == ["generator.revision"]
