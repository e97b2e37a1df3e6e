"""Command line: ``python -m subspacelab <command>``.

Commands: ``stage <step> <study>`` (what DVC runs), ``stage summary``, ``check`` (validate
params.yaml, and refuse unpinned inputs of the active profile), ``dvc-yaml [--check]``, ``list``,
``replay-tracking``.

Errors in what the user gave (params, missing or foreign inputs, corrupt downloads, a full disk, a
diverged run) print one ``error:`` line and exit 2; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from subspacelab.config import ParamsError, lab_config, read_params, study_config, unpinned
from subspacelab.data.download import DownloadError
from subspacelab.io import (
    CorruptFileError,
    DiskFullError,
    MissingFileError,
    ModelFileError,
    NonFiniteError,
)
from subspacelab.runner import MissingInputError


class UsageError(ValueError):
    """The command line names a study or step that does not exist."""


EXPECTED_ERRORS = (
    ParamsError,
    UsageError,
    MissingInputError,
    MissingFileError,
    CorruptFileError,
    ModelFileError,
    DownloadError,
    DiskFullError,
    NonFiniteError,
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="subspacelab", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    st = sub.add_parser("stage", help="run one step of one study, or the summary")
    st.add_argument("step")
    st.add_argument("study", nargs="?")
    sub.add_parser("check", help="validate params.yaml for every study")
    dv = sub.add_parser("dvc-yaml", help="regenerate dvc.yaml from the registry")
    dv.add_argument("--check", action="store_true", help="fail if dvc.yaml is out of date")
    sub.add_parser("list", help="list the studies and their stages")
    sub.add_parser("replay-tracking", help="send runs spooled while MLflow was unreachable")
    return p


def check_params(root: Path) -> None:
    """Validate the lab section and both profiles of every study (ParamsError on the first),
    then list every input the active profile would fetch or load unpinned (one ParamsError)."""
    from subspacelab.registry import studies

    params = read_params(root / "params.yaml")
    lab = lab_config(params)
    known = set(studies())
    for section in params:
        if section != "lab" and section not in known:
            raise ParamsError(
                f"{section}: unknown section; allowed: lab, {', '.join(sorted(known))}"
            )
    missing = []
    for slug, study in studies().items():
        cfg = study_config(study.config, params, slug, lab.profile)
        missing += unpinned(cfg, f"{slug}.{lab.profile}")
    if missing:
        lines = "\n  ".join(missing)
        raise ParamsError(
            f"{len(missing)} input(s) of the {lab.profile} profile are not pinned; nothing is "
            f"fetched or loaded unpinned, so pin each in params.yaml first:\n  {lines}"
        )


def main(argv: Sequence[str] | None = None, root: Path | None = None) -> int:
    """Run a command; expected failures print one ``error:`` line and return 2."""
    args = _parser().parse_args(argv)
    root = (root or Path.cwd()).resolve()
    try:
        return _dispatch(args, root)
    except EXPECTED_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was committed", file=sys.stderr)
        return 130


def _stage(root: Path, step: str, slug: str | None) -> None:
    if slug is None:
        raise UsageError("usage: python -m stages <step> <study>, or python -m stages summary")
    from subspacelab.registry import get_study
    from subspacelab.runner import run_step

    try:
        get_study(slug).step(step)
    except KeyError as exc:  # unknown study or step: the message lists the known ones
        raise UsageError(exc.args[0]) from None
    run_step(root, slug, step)


def _dispatch(args: argparse.Namespace, root: Path) -> int:
    if args.command == "stage":
        if args.step == "summary" and args.study is None:
            from subspacelab.report import write_summary

            print(write_summary(root), file=sys.stderr)
            return 0
        _stage(root, args.step, args.study)
        return 0
    if args.command == "check":
        check_params(root)
        print("params.yaml: ok", file=sys.stderr)
        return 0
    if args.command == "dvc-yaml":
        from subspacelab import dvcgen

        text = dvcgen.render(root)
        if args.check:
            current = (root / "dvc.yaml").read_text() if (root / "dvc.yaml").exists() else ""
            if current != text:
                print(
                    "dvc.yaml is out of date: run `python -m subspacelab dvc-yaml`", file=sys.stderr
                )
                return 1
            return 0
        (root / "dvc.yaml").write_text(text)
        return 0
    if args.command == "list":
        from subspacelab.registry import studies

        for slug, study in studies().items():
            steps = " -> ".join(s.name for s in study.steps)
            print(f"{slug:18s} {study.arxiv:12s} {steps}")
        return 0
    if args.command == "replay-tracking":
        from subspacelab.tracking import replay

        done = replay(root)
        print(
            f"sent {done.sent} spooled run(s); {done.kept} still spooled; "
            f"{done.corrupt} corrupt file(s) set aside",
            file=sys.stderr,
        )
        return 0 if done.kept == 0 and done.corrupt == 0 else 1
    raise AssertionError(args.command)
