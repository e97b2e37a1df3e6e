"""treesynth's full profile (arXiv 2503.17195): the tree's generator is an LLM behind a local
OpenAI-compatible server (vLLM serving the pinned model of params.yaml), with the prompts of the
official ``generator_*_async.py`` reduced to the word-problem task space of the miniature, so
coverage stays measurable: the LLM chooses among the known dimensions and labels every sample's
attributes (TreeSynth's classifier, also its balancing mode's).

Nothing here runs in the tests against a real server: :class:`ChatClient` takes a ``transport``
(the HTTP POST), and the tests give it a fake one.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from subspacelab.studies.treesynth import core
from subspacelab.studies.treesynth.config import GeneratorConfig

Transport = Callable[[str, dict[str, Any], float], dict[str, Any]]
TASK = "grade-school arithmetic word problems with an exact numeric answer"


def http_post(url: str, payload: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """POST ``payload`` as JSON to ``url`` and decode the JSON reply."""
    req = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        return json.loads(resp.read().decode())


@dataclass
class ChatClient:
    """Chat completions from an OpenAI-compatible server at ``endpoint`` (``.../v1``)."""

    endpoint: str
    model: str
    timeout_s: float
    transport: Transport = http_post

    def __post_init__(self) -> None:
        if not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", self.endpoint):
            raise ValueError(f"generator.endpoint must be an http(s) URL, got {self.endpoint!r}")

    def chat(self, prompt: str, temperature: float) -> str:
        """The assistant's reply to one user message."""
        payload = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": temperature,
        }
        reply = self.transport(
            self.endpoint.rstrip("/") + "/chat/completions", payload, self.timeout_s
        )
        try:
            return str(reply["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError) as e:
            raise ValueError(f"the LLM server's reply has no message content: {reply!r}") from e


def parse_json(text: str) -> Any:
    """The first JSON value in ``text`` (LLMs wrap it in prose or code fences)."""
    start = min((i for i in (text.find("["), text.find("{")) if i >= 0), default=-1)
    if start < 0:
        raise ValueError(f"no JSON in the LLM's reply: {text[:200]!r}")
    value, _ = json.JSONDecoder().raw_decode(text[start:])
    return value


def _space(dims: Sequence[int]) -> str:
    return "\n".join(f"- {core.WORLD[d].name}: {', '.join(core.WORLD[d].values)}" for d in dims)


@dataclass
class LLMGenerator:
    """TreeSynth's generator on an LLM server, in the interface of :class:`core.Synthesiser`."""

    client: ChatClient
    cfg: GeneratorConfig
    infinite_threshold: int
    rng: np.random.Generator
    calls: Counter[str] = field(default_factory=Counter)

    def _constraint_text(self, constraints: core.Constraints) -> str:
        lines = []
        for d, vals in sorted(constraints.items()):
            v = vals[int(self.rng.integers(len(vals)))]  # an infinite node's list: one value
            lines.append(f"- {core.WORLD[d].name}: {core.WORLD[d].values[v]}")
        return "\n".join(lines) or "- none"

    def label(self, texts: Sequence[str]) -> list[tuple[int, ...]]:
        """Each text's value on every dimension of the known space (the LLM classifies)."""
        self.calls["label"] += 1
        prompt = (
            f"Classify each numbered problem on every dimension below; answer a JSON list with "
            f"one object per problem mapping each dimension to exactly one listed value.\n"
            f"{_space(range(len(core.WORLD)))}\n\n"
            + "\n".join(f"{i}. {t}" for i, t in enumerate(texts))
        )
        rows = parse_json(self.client.chat(prompt, 0.0))
        if not isinstance(rows, list) or len(rows) != len(texts):
            raise ValueError(f"the labeller returned {rows!r} for {len(texts)} problems")
        out = []
        for row in rows:
            try:
                out.append(tuple(d.values.index(row[d.name]) for d in core.WORLD))
            except (KeyError, ValueError, TypeError) as e:
                raise ValueError(f"label {row!r} is outside the task space") from e
        return out

    def _samples(self, reply: str) -> list[core.Sample]:
        rows = parse_json(reply)
        if not isinstance(rows, list) or not all(
            isinstance(r, dict) and "problem" in r and "answer" in r for r in rows
        ):
            raise ValueError(f"want a JSON list of {{problem, answer}}, got {rows!r}")
        texts = [str(r["problem"]) for r in rows]
        return [
            core.Sample(a, t, str(r["answer"]))
            for a, t, r in zip(self.label(texts), texts, rows, strict=True)
        ]

    def generate(self, constraints: core.Constraints, n: int) -> list[core.Sample]:
        """``n`` problems under ``constraints`` (temperature ``gen_temperature``)."""
        self.calls["generate"] += 1
        prompt = (
            f"Write {n} diverse {TASK}. Each must satisfy:\n{self._constraint_text(constraints)}"
            f'\nAnswer a JSON list of {n} objects {{"problem": ..., "answer": ...}}.'
        )
        out = self._samples(self.client.chat(prompt, self.cfg.gen_temperature))
        if len(out) != n:
            raise ValueError(f"asked the LLM for {n} problems, got {len(out)}")
        return out

    def mutate(self, sample: core.Sample) -> core.Sample:
        """Evol-style: the LLM rewrites ``sample`` changing one (randomly chosen) dimension."""
        self.calls["mutate"] += 1
        dim = core.WORLD[int(self.rng.integers(len(core.WORLD)))]
        prompt = (
            f"Rewrite this problem so that its {dim.name} changes to another of "
            f"{', '.join(dim.values)}; keep the rest.\n{sample.text}\n"
            'Answer a JSON list with one object {"problem": ..., "answer": ...}.'
        )
        return self._samples(self.client.chat(prompt, self.cfg.gen_temperature))[0]

    def propose(
        self, samples: Sequence[core.Sample], excluded: Sequence[int]
    ) -> tuple[int, dict[int, list[int]]]:
        """The LLM's core dimension (not excluded) and its partition of the sample indices."""
        self.calls["propose"] += 1
        free = [d for d in range(len(core.WORLD)) if d not in excluded]
        prompt = (
            f"Choose ONE dimension below that best splits these problems, and assign every "
            f"problem index to exactly one of its values (no 'others', no combined values).\n"
            f"{_space(free)}\n\n"
            + "\n".join(f"{i}. {s.text}" for i, s in enumerate(samples))
            + '\nAnswer JSON {"dimension": name, "partition": {value: [indices]}}.'
        )
        reply = parse_json(self.client.chat(prompt, self.cfg.select_temperature))
        names = [core.WORLD[d].name for d in free]
        if not isinstance(reply, dict) or reply.get("dimension") not in names:
            return -1, {}  # rejected by the validator: an unknown or excluded dimension
        dim = free[names.index(reply["dimension"])]
        partition: dict[int, list[int]] = {}
        for value, idx in dict(reply.get("partition") or {}).items():
            if value not in core.WORLD[dim].values or not isinstance(idx, list):
                return dim, {}
            partition[core.WORLD[dim].values.index(value)] = [int(i) for i in idx]
        return dim, partition

    def expand(self, dim: int, seen: Sequence[int]) -> tuple[list[int], bool]:
        """The LLM completes the value set (``null``: complete already; ``infinite``)."""
        self.calls["expand"] += 1
        d = core.WORLD[dim]
        prompt = (
            f"Values of {d.name} so far: {', '.join(d.values[v] for v in seen)}. Complete them "
            f"into a mutually exclusive, exhaustive set from: {', '.join(d.values)}. Answer "
            f'JSON {{"status": "null" | "complete" | "infinite", "values": [...]}}.'
        )
        reply = parse_json(self.client.chat(prompt, self.cfg.expand_temperature))
        listed = reply.get("values") or [] if isinstance(reply, dict) else []
        values = sorted(set(seen) | {d.values.index(v) for v in listed if v in d.values})
        infinite = (isinstance(reply, dict) and reply.get("status") == "infinite") or len(
            values
        ) > self.infinite_threshold
        return values, infinite
