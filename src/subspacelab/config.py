"""Typed, validated configuration read from params.yaml.

params.yaml is the one source of values: schemas here and in each study's ``config.py`` carry
types and allowed ranges, never defaults. Everything is checked before any compute, and every
error names the dotted key that is wrong and what is allowed.

Layout of params.yaml::

    lab:            # global settings, schema :class:`LabConfig`
      profile: mini
      ...
    <slug>:         # one section per study
      mini: {...}   # schema: the study's config dataclass
      full: {...}   # same schema
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")
PROFILES = ("mini", "full")


class ParamsError(ValueError):
    """params.yaml (or an override) is invalid; the message names the key and what is allowed."""


def param(
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: Sequence[object] | None = None,
    min_len: int | None = None,
) -> Any:
    """A required dataclass field (no default: params.yaml gives the value) with allowed values.

    Numeric bounds and ``choices`` apply to the value, or to every element when it is a list.
    """
    rules = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "min_len": min_len}
    return field(default=MISSING, metadata={k: v for k, v in rules.items() if v is not None})


def _describe(rules: Mapping[str, Any]) -> str:
    parts = []
    for key, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if key in rules:
            parts.append(f"{sym} {rules[key]}")
    if "choices" in rules:
        parts.append("one of " + ", ".join(repr(c) for c in rules["choices"]))
    if "min_len" in rules:
        parts.append(f"a list of at least {rules['min_len']} item(s)")
    return " and ".join(parts)


def _violates(value: object, rules: Mapping[str, Any]) -> bool:
    if isinstance(value, float) and not math.isfinite(value):
        return True
    checks = {
        "ge": lambda v, b: v >= b,
        "gt": lambda v, b: v > b,
        "le": lambda v, b: v <= b,
        "lt": lambda v, b: v < b,
    }
    for key, ok in checks.items():
        if key in rules and isinstance(value, int | float) and not ok(value, rules[key]):
            return True
    return "choices" in rules and value not in rules["choices"]


def validate(obj: object, prefix: str) -> None:
    """Check every field's rules and each dataclass's optional ``check()`` method, recursively
    (into nested dataclasses and into lists and dicts of them).

    ``check()`` returns a mapping ``{field: what is allowed}`` for cross-field problems.
    """
    if not dataclasses.is_dataclass(obj):
        return
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}.{f.name}"
        rules = f.metadata
        if rules:
            if "min_len" in rules and len(value) < rules["min_len"]:
                raise ParamsError(f"{key}: got {value!r}; allowed: {_describe(rules)}")
            items = value if isinstance(value, list) else [value]
            for item in items:
                if _violates(item, rules):
                    raise ParamsError(f"{key}: got {item!r}; allowed: {_describe(rules)}")
        if dataclasses.is_dataclass(value):
            validate(value, key)
        elif isinstance(value, list | dict):
            entries = value.items() if isinstance(value, dict) else enumerate(value)
            for index, item in entries:
                validate(item, f"{key}[{index}]" if isinstance(value, list) else f"{key}.{index}")
    check = getattr(obj, "check", None)
    if callable(check):
        for name, allowed in check().items():
            value = getattr(obj, name, None)
            raise ParamsError(f"{prefix}.{name}: got {value!r}; allowed: {allowed}")


def unpinned(obj: object, prefix: str) -> list[str]:
    """Every input the config would download or load without a pinned checksum or revision,
    as ``<dotted key>: <what to pin>``, recursively (like :func:`validate`).

    A dataclass declares its own with an optional ``unpinned()`` method returning
    ``{field: what is missing}`` for the inputs its values select (a full profile's archives, a
    model revision); a run refuses before any compute while the list is not empty.
    """
    if not dataclasses.is_dataclass(obj):
        return []
    found = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}.{f.name}"
        if dataclasses.is_dataclass(value):
            found += unpinned(value, key)
        elif isinstance(value, list | dict):
            entries = value.items() if isinstance(value, dict) else enumerate(value)
            for index, item in entries:
                found += unpinned(
                    item, f"{key}[{index}]" if isinstance(value, list) else f"{key}.{index}"
                )
    own = getattr(obj, "unpinned", None)
    if callable(own):
        found += [f"{prefix}.{name}: {what}" for name, what in own().items()]
    return found


def build(schema: type[T], raw: object, prefix: str) -> T:
    """Merge ``raw`` into the structured ``schema`` and validate; ParamsError when invalid."""
    if not isinstance(raw, Mapping):
        raise ParamsError(f"{prefix}: expected a mapping of settings, got {type(raw).__name__}")
    try:
        base = OmegaConf.structured(schema)
        merged = OmegaConf.merge(base, OmegaConf.create(dict(raw)))
        missing = sorted(OmegaConf.missing_keys(merged))
        if missing:
            raise ParamsError(f"{prefix}.{missing[0]}: missing; params.yaml must set it")
        obj = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise ParamsError(_omegaconf_message(exc, prefix)) from None
    validate(obj, prefix)
    return obj  # type: ignore[return-value]


def _omegaconf_message(exc: OmegaConfBaseException, prefix: str) -> str:
    key = getattr(exc, "full_key", None) or "?"
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if first.startswith("Key '") and "not in" in first:
        return f"{prefix}.{key}: unknown key ({first})"
    return f"{prefix}.{key}: {first}"


@dataclass
class LabConfig:
    """The ``lab`` section: settings shared by every study."""

    profile: str = param(choices=PROFILES)
    device: str = param(choices=("auto", "cpu", "cuda"))
    threads: int = param(ge=1)
    # Training scale-out (passed to Lightning's Trainer); 1/1/auto on a laptop.
    accelerator_devices: int = param(ge=1)
    num_nodes: int = param(ge=1)
    strategy: str = param(choices=("auto", "ddp", "ddp_spawn", "fsdp"))
    precision: str = param(choices=("32-true", "16-mixed", "bf16-mixed", "64-true"))
    deterministic: bool = MISSING
    # Study chains `make lab` runs side by side (0: one per CPU core). Never changes a number,
    # so it is not a param of any stage.
    jobs: int = param(ge=0)

    def job_count(self) -> int:
        """``jobs``, with 0 meaning one per CPU core this process may use."""
        import os

        return self.jobs or len(os.sched_getaffinity(0))


def read_params(path: Path) -> dict[str, Any]:
    """Read params.yaml as plain data; a clear error if it is missing or not YAML."""
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    return data


def lab_config(params: Mapping[str, Any]) -> LabConfig:
    """The validated ``lab`` section."""
    if "lab" not in params:
        raise ParamsError("lab: missing section; params.yaml must have a 'lab' section")
    return build(LabConfig, params["lab"], "lab")


def _section_type(hint: object) -> type | None:
    """The dataclass a field holds (``X`` or ``X | None``), or None for a plain value or map."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return hint
    arms = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
    return arms[0] if len(arms) == 1 and isinstance(arms[0], type) else None


def inherit(base: object, over: object, schema: type | None) -> object:
    """``over`` on top of ``base`` for a section of ``schema``: a field holding a section (a
    dataclass) merges key by key, recursively; any other value in ``over`` (a number, a list, a
    map of names such as per-category settings, ``null``) replaces ``base``'s."""
    if schema is None or not isinstance(base, Mapping) or not isinstance(over, Mapping):
        return over
    hints = typing.get_type_hints(schema)
    merged = dict(base)
    for key, value in over.items():
        merged[key] = inherit(base.get(key), value, _section_type(hints.get(key)))
    return merged


def profile_section(
    section: Mapping[str, Any], slug: str, profile: str, schema: type | None
) -> Any:
    """The raw params of one profile: ``mini`` as written; ``full`` as the overrides it writes
    on top of ``mini`` (what it leaves out, it inherits; see :func:`inherit`)."""
    for prof in PROFILES:
        if prof not in section:
            raise ParamsError(f"{slug}.{prof}: missing profile; params.yaml must set it")
    if profile == "mini":
        return section["mini"]
    return inherit(section["mini"], section[profile] or {}, schema)


def study_config(schema: type[T], params: Mapping[str, Any], slug: str, profile: str) -> T:
    """Validate both profiles of one study's section and return the active one.

    Both are checked, so a typo in ``full`` is caught on a laptop, not on the cluster. ``full``
    inherits every value it does not set from ``mini`` (:func:`profile_section`).
    """
    section = params.get(slug)
    if not isinstance(section, Mapping):
        raise ParamsError(f"{slug}: missing section; params.yaml must have a '{slug}' section")
    unknown = sorted(set(section) - set(PROFILES))
    if unknown:
        raise ParamsError(f"{slug}.{unknown[0]}: unknown key; allowed: {', '.join(PROFILES)}")
    built = {
        prof: build(schema, profile_section(section, slug, prof, schema), f"{slug}.{prof}")
        for prof in PROFILES
    }
    return built[profile]


def to_flat_dict(obj: object, prefix: str = "") -> dict[str, Any]:
    """Flatten a (nested) dataclass into dotted keys, for MLflow params."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(to_flat_dict(value, key + "."))
        else:
            out[key] = value
    return out
