"""Command line: ``python -m subspacelab <command>``.

Commands: ``lab [study ...] [--jobs N]`` (the lab through DVC, study chains side by side),
``stage <step> <study>`` (what DVC runs), ``stage summary``, ``check`` (validate params.yaml, and
refuse unpinned inputs of the active profile), ``dvc-yaml [--check]``, ``list``,
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


class UsageError(ValueError):
    """The command line names a study or step that does not exist."""


def expected_errors() -> tuple[type[BaseException], ...]:
    """The errors that mean bad user input (one ``error:`` line), imported only when one is
    raised: subspacelab.io loads torch, which the lab driver's no-op run should not pay for."""
    from subspacelab.io import (
        CorruptFileError,
        DiskFullError,
        DownloadError,
        MissingFileError,
        ModelFileError,
        NonFiniteError,
    )
    from subspacelab.runner import MissingInputError

    return (
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
    lb = sub.add_parser("lab", help="reproduce the lab through DVC, study chains side by side")
    lb.add_argument("studies", nargs="*", help="studies to run (default: all, then the summary)")
    lb.add_argument("--jobs", type=int, help="chains at once (default: params.yaml lab.jobs)")
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


CHECK_STAMP = Path(".dvc/tmp/subspacelab-checked")


def _check_key(root: Path) -> str:
    """Digest of everything the lab's pre-run checks read: the code, params.yaml, dvc.yaml,
    plugin studies and the interpreter."""
    import hashlib
    import importlib.util
    import os

    from subspacelab.registry import PLUGINS_ENV

    plugins = os.environ.get(PLUGINS_ENV, "")
    code = [*(root / "src").rglob("*.py"), *(root / "stages").rglob("*.py")]
    files = [*sorted(code), root / "params.yaml", root / "dvc.yaml"]
    for spec in filter(None, plugins.split(",")):
        found = importlib.util.find_spec(spec.strip().partition(":")[0])
        if found is not None and found.origin:
            files.append(Path(found.origin))
    digest = hashlib.sha256(f"{sys.version}\0{plugins}".encode())
    for path in files:
        if path.is_file():
            digest.update(f"\0{path}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def lab_checks(root: Path) -> bool:
    """params.yaml valid and dvc.yaml current (as ``check`` and ``dvc-yaml --check``); both
    import every study, so a pass is remembered until the code or either file changes."""
    from subspacelab import dvcgen

    key = _check_key(root)
    stamp = root / CHECK_STAMP
    if stamp.is_file() and stamp.read_text() == key:
        return True
    check_params(root)
    current = (root / "dvc.yaml").read_text() if (root / "dvc.yaml").exists() else ""
    if current != dvcgen.render(root):
        print("dvc.yaml is out of date: run `python -m subspacelab dvc-yaml`", file=sys.stderr)
        return False
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key)
    return True


def main(argv: Sequence[str] | None = None, root: Path | None = None) -> int:
    """Run a command; expected failures print one ``error:`` line and return 2."""
    args = _parser().parse_args(argv)
    root = (root or Path.cwd()).resolve()
    try:
        return _dispatch(args, root)
    except (ParamsError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was committed", file=sys.stderr)
        return 130
    except Exception as exc:
        if not isinstance(exc, expected_errors()):
            raise  # a bug: keep its traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


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
            from subspacelab.summary import write_summary

            print(write_summary(root), file=sys.stderr)
            return 0
        _stage(root, args.step, args.study)
        return 0
    if args.command == "lab":
        from subspacelab.lab import run_lab

        if args.jobs is not None and args.jobs < 1:
            raise UsageError(f"--jobs: got {args.jobs}; allowed: >= 1")
        jobs = args.jobs or lab_config(read_params(root / "params.yaml")).job_count()
        if not lab_checks(root):
            return 1
        return run_lab(root, args.studies, jobs)
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
