"""The study registry: one :class:`Study` per paper, from which everything else is derived.

A study declares its steps (download -> features -> fit -> evaluate, and transfer or merge where
the paper has one), which config sections each step reads, and the claims its metrics must show.
The DVC stages (dvc.yaml), the Prefect flows, the MLflow runs and the report are generated from
these declarations; nothing about a study is written down twice.
"""

from __future__ import annotations

import importlib
import math
import os
import pkgutil
import random
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from subspacelab.io import NonFiniteError
from subspacelab.verdicts import ClaimResult, Stat

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure

    from subspacelab.config import LabConfig

StepKind = Literal["data", "models", "report"]
_CURVE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
METRIC_LEVEL = r"[A-Za-z0-9][A-Za-z0-9_.=+-]*"
METRIC_NAME = re.compile(rf"{METRIC_LEVEL}(/{METRIC_LEVEL})*")
"""A metric name: levels from the most general to the most specific, joined by ``/``
(``<setting>/<arm>/<quantity>``, e.g. ``h1/ties/abs``); ``_`` joins words within a level."""


def _glob(pattern: str) -> re.Pattern[str]:
    """A metric-name glob as a regex: ``**`` any levels, ``*`` any text within a level."""
    parts = re.split(r"(\*\*|\*)", pattern)
    rx = "".join(".*" if p == "**" else "[^/]*" if p == "*" else re.escape(p) for p in parts)
    return re.compile(rx)


class Metrics(Mapping[str, Stat]):
    """Read-only metrics of one study, each a :class:`Stat` over seeds."""

    def __init__(self, values: Mapping[str, Sequence[float] | float]) -> None:
        self._stats: dict[str, Stat] = {}
        for name, vals in values.items():
            seq = [vals] if isinstance(vals, int | float) else list(vals)
            if not seq or not all(isinstance(v, int | float) for v in seq):
                raise ValueError(f"metric {name!r}: expected numbers, got {vals!r}")
            bad = [i for i, v in enumerate(seq) if not math.isfinite(v)]
            if bad:
                raise NonFiniteError(
                    f"metric {name!r} is not finite: {seq[bad[0]]} at index {bad[0]} of "
                    f"{len(seq)} (a diverged run or an undefined score)"
                )
            self._stats[name] = Stat(tuple(float(v) for v in seq))

    def __getitem__(self, name: str) -> Stat:
        if name not in self._stats:
            raise KeyError(f"metric {name!r} not recorded; have: {', '.join(sorted(self._stats))}")
        return self._stats[name]

    def __iter__(self):
        return iter(self._stats)

    def __len__(self) -> int:
        return len(self._stats)

    def select(self, pattern: str) -> dict[str, Stat]:
        """The metrics whose names match ``pattern``, a glob in which ``*`` stands for any text
        within one ``/``-separated level (``"h1/*/abs"``) and ``**`` for any number of levels."""
        rx = _glob(pattern)
        return {n: s for n, s in sorted(self._stats.items()) if rx.fullmatch(n)}

    def family(self, template: str) -> dict[str, Stat]:
        """The metrics a template names, keyed by its one ``{field}`` (a level, or part of one):
        ``family("h1/{arm}/abs")`` -> ``{"ties": Stat, ...}``. A KeyError when none match."""
        fields = re.findall(r"\{(\w+)\}", template)
        if len(fields) != 1:
            raise ValueError(f"template {template!r}: want exactly one {{field}}")
        head, _, tail = template.partition("{" + fields[0] + "}")
        rx = re.compile(re.escape(head) + r"([^/]+)" + re.escape(tail))
        found = {m.group(1): s for n, s in sorted(self._stats.items()) if (m := rx.fullmatch(n))}
        if not found:
            raise KeyError(f"no metric matches {template!r}; have: {', '.join(sorted(self))}")
        return found

    def to_json(self) -> dict[str, dict[str, Any]]:
        """JSON form: name -> {mean, std, n, values}."""
        return {name: stat.to_json() for name, stat in sorted(self._stats.items())}


@dataclass(frozen=True)
class Claim:
    """A relation from the spec's miniature section, decided on the study's metrics.

    ``paper`` is the paper's own claim or number; ``statement`` the miniature relation in the
    spec's words (or the issue's, where an issue replaced it), kept here since users have no spec;
    ``check`` returns a :class:`~subspacelab.verdicts.ClaimResult` built from conditions on paired
    per-seed differences (:func:`~subspacelab.verdicts.gap`) decided on their 95 % interval:
    ``holds``, ``does not hold`` or ``inconclusive``.
    """

    id: str
    statement: str
    paper: str
    check: Callable[[Metrics], ClaimResult]


@dataclass(frozen=True)
class StepOutput:
    """What a step returns besides the files it wrote: scalars logged to MLflow."""

    metrics: dict[str, float] = field(default_factory=dict)


CurveRows = Sequence[Mapping[str, float]]


@dataclass(frozen=True)
class Report:
    """What a study's last step returns.

    ``metrics``: name -> value per seed (or one value); ``figures`` go to reports/<slug>/plots/;
    ``tables`` (name -> Markdown) go to reports/<slug>/tables.md and into the summary;
    ``curves``: name -> rows (column -> number) of each curve the study declares
    (:attr:`Study.curves`), written to reports/<slug>/curves/<name>.csv, which dvc.yaml declares
    as DVC plots (``dvc plots show`` / ``dvc plots diff`` draw and compare them).
    """

    metrics: dict[str, Sequence[float] | float]
    figures: dict[str, Figure] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)
    curves: dict[str, CurveRows] = field(default_factory=dict)


@dataclass(frozen=True)
class Curve:
    """A key curve of a study, declared up front so dvc.yaml can name its file and axes.

    The report step returns its rows in ``Report.curves[name]``; ``x`` is the column on the
    x axis, ``y`` one column or several (one line each), ``title`` the plot's title.
    """

    name: str
    x: str
    y: str | tuple[str, ...]
    title: str = ""

    @property
    def ys(self) -> tuple[str, ...]:
        """The y columns as a tuple."""
        return (self.y,) if isinstance(self.y, str) else tuple(self.y)


C = TypeVar("C")
_FILE_PART = r"[A-Za-z0-9][A-Za-z0-9_.=-]*"
_FILE_NAME = re.compile(rf"{_FILE_PART}(/{_FILE_PART})*")  # folders allowed, never ".."


def seed_all(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class SeedMetrics:
    """Per-seed metrics collected in seed order: ``record(values)`` once per seed, then
    :meth:`as_dict` gives name -> one value per seed (what :class:`Report` takes)."""

    def __init__(self) -> None:
        self._values: dict[str, list[float]] = {}
        self._rounds = 0

    def record(self, values: Mapping[str, float]) -> None:
        """Add one seed's values; every seed must record the same names."""
        if self._rounds and set(values) != set(self._values):
            missing = sorted(set(self._values) ^ set(values))
            raise ValueError(f"seed {self._rounds} records other metrics than seed 0: {missing}")
        for name, value in values.items():
            self._values.setdefault(name, []).append(float(value))
        self._rounds += 1

    def as_dict(self) -> dict[str, list[float]]:
        """name -> values, one per recorded seed."""
        return {k: list(v) for k, v in self._values.items()}


@dataclass
class StepContext(Generic[C]):
    """Everything a step may use. Only the config sections it declares are readable.

    Typed by the study's config (``StepContext[GcrConfig]``), it saves and loads the step's
    tensors and models under its own study's name (:meth:`save`, :meth:`load`,
    :meth:`save_model`, :meth:`load_model`), iterates the seeds with everything seeded
    (:meth:`seeded`) and collects per-seed metrics (:class:`SeedMetrics`).
    """

    study: Study
    step: Step
    cfg: C
    lab: LabConfig
    root: Path
    out: Path
    inputs: dict[str, Path]
    device: torch.device
    progress: Callable[[str], None]

    @property
    def seeds(self) -> list[int]:
        """The seeds this study's claims average over."""
        return list(self.cfg.seeds)  # type: ignore[attr-defined]

    @property
    def profile(self) -> str:
        """The active profile, mini or full."""
        return self.lab.profile

    def seeded(self, seeds: Sequence[int] | None = None) -> Iterator[int]:
        """Each seed of the study (or of ``seeds``), with Python, NumPy and torch seeded by it
        before the loop body runs."""
        for seed in self.seeds if seeds is None else seeds:
            seed_all(seed)
            yield seed

    def _file(self, base: Path, name: str) -> Path:
        if not _FILE_NAME.fullmatch(name) or ".." in name:
            raise ValueError(
                f"file name {name!r}: want names like 'model' or 'seed0/model' "
                f"({_FILE_NAME.pattern}, no '..')"
            )
        return base / (name if name.endswith(".safetensors") else f"{name}.safetensors")

    def _source(self, step: str | None) -> tuple[Path, str]:
        """The input directory of ``step`` (a needed step, or ``"slug.step"`` of a used one) and
        the study that wrote it; with no step, the step's only input."""
        if step is None:
            if len(self.inputs) != 1:
                raise ValueError(
                    f"step {self.study.slug}.{self.step.name} has inputs {sorted(self.inputs)}; "
                    "name the one to load from with step="
                )
            step = next(iter(self.inputs))
        if step not in self.inputs:
            raise KeyError(
                f"step {self.study.slug}.{self.step.name} has no input {step!r}; "
                f"declared: {sorted(self.inputs)} (needs= or uses=)"
            )
        owner = step.partition(".")[0] if "." in step else self.study.slug
        return self.inputs[step], owner

    def save(
        self,
        name: str,
        tensors: Mapping[str, Any],
        *,
        kind: str = "data",
        meta: Mapping[str, str] | None = None,
    ) -> Path:
        """Write ``tensors`` to ``<out>/<name>.safetensors``, stamped with this study and
        ``kind``; returns the path."""
        from subspacelab.io import save_tensors

        path = self._file(self.out, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_tensors(path, tensors, study=self.study.slug, kind=kind, meta=meta)
        return path

    def load(
        self, name: str, *, step: str | None = None, kind: str | None = None
    ) -> dict[str, torch.Tensor]:
        """The tensors of ``<name>.safetensors`` from an input step (see :meth:`load_meta`)."""
        return self.load_meta(name, step=step, kind=kind)[0]

    def load_meta(
        self, name: str, *, step: str | None = None, kind: str | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """Tensors and header of ``<name>.safetensors`` written by input ``step`` (a needed
        step's name or a used ``"slug.step"``; omitted when the step has one input), checked to
        be that study's (and of ``kind``)."""
        from subspacelab.io import load_tensors

        base, owner = self._source(step)
        return load_tensors(self._file(base, name), study=owner, kind=kind)

    def save_model(
        self, name: str, module: torch.nn.Module, *, meta: Mapping[str, str] | None = None
    ) -> Path:
        """Write a module's state dict (CPU copies) as ``<name>.safetensors``, kind ``model``."""
        state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
        return self.save(name, state, kind="model", meta=meta)

    def load_model(
        self, module: torch.nn.Module, name: str, *, step: str | None = None
    ) -> torch.nn.Module:
        """Load ``<name>.safetensors`` (kind ``model``) into ``module`` strictly; returns it."""
        module.load_state_dict(self.load(name, step=step, kind="model"))
        return module


StepFn = Callable[[StepContext[Any]], "StepOutput | Report | None"]


@dataclass(frozen=True)
class Step:
    """One stage of a study's chain.

    ``reads`` names the config sections (fields of the study's config dataclass) the step uses;
    they become the stage's DVC params, and reading any other section fails loudly.
    ``kind`` places its directory: data/<slug>/<name>/ or models/<slug>/<name>/; the study's
    last step is the ``report`` step and writes reports/<slug>/.
    ``uses`` names other studies' steps as ``"<slug>.<step>"`` (a shared task zoo, models to
    probe); their directories become DVC deps and ``ctx.inputs["<slug>.<step>"]``.
    ``full``, where given, runs instead of ``run`` under the full profile (the paper's data and
    backbone), so a step body never branches on the profile.
    """

    name: str
    run: StepFn
    needs: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    kind: StepKind = "data"
    description: str = ""
    uses: tuple[str, ...] = ()
    full: StepFn | None = None

    def implementation(self, profile: str) -> StepFn:
        """The function this step runs under ``profile``: ``full`` where the step declares a
        full-profile implementation of its own, ``run`` otherwise."""
        return self.full if profile == "full" and self.full is not None else self.run


HEADLINE_MAX = 24  # metrics a study without `headline` patterns may show in full


@dataclass(frozen=True)
class Study:
    """One paper of the catalogue, as a chain of steps and the claims its metrics must show.

    ``kind="comparison"`` marks a cross-paper comparison (methods of several papers and their
    baselines on the same inputs): it reports tables and may declare no claims.

    ``headline`` names the metrics (``fnmatch`` patterns over metric names) whose means go to
    reports/<slug>/headline.json, the file DVC compares across experiments; left empty, a study
    with at most :data:`HEADLINE_MAX` metrics shows them all and a larger one only its claims'
    decided quantities (always there), so `dvc exp show` stays a table a person can read.
    """

    slug: str
    title: str
    arxiv: str
    group: str
    config: type
    steps: tuple[Step, ...]
    claims: tuple[Claim, ...]
    kind: Literal["paper", "comparison"] = "paper"
    curves: tuple[Curve, ...] = ()
    headline: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind == "paper" and not self.claims:
            raise ValueError(f"study {self.slug}: a paper's study declares its claims")
        curve_names = [c.name for c in self.curves]
        bad_curves = [
            n for n in curve_names if not _CURVE_NAME.fullmatch(n) or curve_names.count(n) > 1
        ]
        if bad_curves:
            raise ValueError(
                f"study {self.slug}: curve names {bad_curves} must be unique and match "
                f"{_CURVE_NAME.pattern}"
            )
        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise ValueError(f"study {self.slug}: duplicate step names {names}")
        for i, st in enumerate(self.steps):
            bad = [u for u in st.uses if u.count(".") != 1 or u.startswith(f"{self.slug}.")]
            if bad:
                raise ValueError(f"study {self.slug}: step {st.name} uses {bad}; want 'slug.step'")
            unknown = [n for n in st.needs if n not in names[:i]]
            if unknown:
                raise ValueError(f"study {self.slug}: step {st.name} needs {unknown}, not earlier")
            is_last = i == len(self.steps) - 1
            if (st.kind == "report") != is_last:
                raise ValueError(f"study {self.slug}: exactly the last step must be kind='report'")

    def step(self, name: str) -> Step:
        """The step called ``name``; a KeyError naming the allowed steps otherwise."""
        for st in self.steps:
            if st.name == name:
                return st
        allowed = ", ".join(s.name for s in self.steps)
        raise KeyError(f"study {self.slug} has no step {name!r}; steps: {allowed}")

    @property
    def run_module(self) -> str:
        """The module that defines the study's step functions."""
        return self.steps[0].run.__module__

    @property
    def report_step(self) -> Step:
        """The last step, which writes reports/<slug>/."""
        return self.steps[-1]

    def stage_name(self, step: str) -> str:
        """The DVC stage name of a step: ``<slug>_<step>``."""
        return f"{self.slug}_{step}"

    def upstream(self, step: str) -> list[Step]:
        """All steps ``step`` depends on, transitively, in chain order."""
        wanted: set[str] = set()
        stack = list(self.step(step).needs)
        while stack:
            name = stack.pop()
            if name not in wanted:
                wanted.add(name)
                stack.extend(self.step(name).needs)
        return [s for s in self.steps if s.name in wanted]


def step_dir(root: Path, study: Study, step: Step) -> Path:
    """Fixed output directory of a data/models step."""
    if step.kind == "report":
        return root / "reports" / study.slug
    return root / step.kind / study.slug / step.name


def report_paths(root: Path, slug: str) -> dict[str, Path]:
    """The fixed report outputs of a study: ``metrics`` (the full record), ``headline`` (the
    numbers DVC compares across experiments), ``claims``, ``tables``, ``plots`` (figures) and
    ``curves`` (the declared curves' data)."""
    base = root / "reports" / slug
    return {
        "metrics": base / "metrics.json",
        "headline": base / "headline.json",
        "claims": base / "claims.json",
        "tables": base / "tables.md",
        "plots": base / "plots",
        "curves": base / "curves",
    }


_REGISTRY: dict[str, Study] = {}


PLUGINS_ENV = "SUBSPACELAB_STUDIES"


_LOADED: dict[str, Study] = {}  # studies imported one at a time by get_study


def _package_slugs() -> list[str]:
    import subspacelab.studies as pkg

    return sorted(info.name for info in pkgutil.iter_modules(pkg.__path__) if info.ispkg)


def _load_package(slug: str) -> Study:
    if slug not in _LOADED:
        study: Study = importlib.import_module(f"subspacelab.studies.{slug}.study").STUDY
        if study.slug != slug:
            raise ValueError(f"study package {slug} declares slug {study.slug}")
        _LOADED[slug] = study
    return _LOADED[slug]


def _plugins() -> dict[str, Study]:
    found: dict[str, Study] = {}
    for spec in filter(None, os.environ.get(PLUGINS_ENV, "").split(",")):
        module, _, attr = spec.strip().partition(":")
        study = getattr(importlib.import_module(module), attr or "STUDY")
        found[study.slug] = study
    return found


def studies() -> dict[str, Study]:
    """All registered studies by slug.

    Discovered from ``subspacelab.studies.<slug>.study`` (its ``STUDY``), plus studies kept
    outside the package, named as ``module:ATTR`` in the comma-separated SUBSPACELAB_STUDIES.
    """
    if not _REGISTRY:
        found = {slug: _load_package(slug) for slug in _package_slugs()}
        for slug, study in _plugins().items():
            if slug in found:
                raise ValueError(f"{PLUGINS_ENV}: study {slug!r} is already registered")
            found[slug] = study
        _REGISTRY.update(found)
    return dict(_REGISTRY)


def resolve_use(ref: str) -> tuple[Study, Step]:
    """The study and step named by a ``"<slug>.<step>"`` reference."""
    slug, _, step = ref.partition(".")
    study = get_study(slug)
    return study, study.step(step)


def get_study(slug: str) -> Study:
    """One study by slug; a KeyError naming the known slugs otherwise.

    Imports only that study's package (or the plugin modules), not every study: a stage loads
    the code its step runs and nothing else."""
    if not _REGISTRY:
        if slug in _LOADED:
            return _LOADED[slug]
        plugins = _plugins()
        if slug in plugins and slug not in _package_slugs():
            _LOADED[slug] = plugins[slug]
            return plugins[slug]
        if slug not in plugins and slug in _package_slugs():
            return _load_package(slug)
    all_studies = studies()
    if slug not in all_studies:
        raise KeyError(f"unknown study {slug!r}; known: {', '.join(sorted(all_studies))}")
    return all_studies[slug]
