"""``python -m subspacelab lab [study ...] [--jobs N]``: the lab through DVC, chains side by side.

DVC stays the one record. Each study's chain is reproduced by its own
``dvc --wait-for-lock repro --single-item <its stages>`` process: DVC checks a stage and records
it in dvc.lock under its repository lock, but releases that lock while the stage's command runs,
so up to ``lab.jobs`` chains compute at once while their checks and dvc.lock updates take turns.
A chain starts once the chains of the studies it uses (``Step.uses``) are done, and the summary
runs last, so no two jobs write the same outputs and DVC's read/write locks never collide. What
runs and what is recorded is DVC's decision, stage by stage, as in a sequential ``dvc repro``;
new dvc.lock entries are put in DVC's own (sequential) order at the end.

One in-process ``dvc status`` first tells which chains have anything to do, so a run with
nothing to do costs one status and no job. A clean status is remembered with a digest of the
(inode, mtime, size) of every file it read (:func:`workspace_key`, the triple DVC's own state
database trusts before rehashing): while none of them changes, a rerun answers at once. Ctrl-C
(SIGINT, or SIGTERM) is passed to every job: DVC stops the running stage, whose outputs are
still in the runner's staging area and never reach their place, and records nothing for it; what
was recorded before stays. Jobs start with SIGINT at its default even when the driver was
started with it ignored (``nohup ... &``, a shell's background job), so a SIGTERM to such a
driver still stops them at once.

Stages start from a fork server (:mod:`subspacelab.forkserver`) that imported torch, Lightning,
MLflow and every study once for the whole run: a stage begins in a tenth of a second instead of
paying its imports again (2-7 s). The stage is the same ``python -m stages`` command, in its own
process, with DVC's environment and directory.

Console: one line when a stage starts and one when it ends (``[12/130] gcr_fit 96 s``), our
warnings and errors, and an end line. Each chain's DVC output goes to ``logs/lab/<slug>.log``,
each stage's own output to ``logs/<stage>.log``.
"""

from __future__ import annotations

import copy
import json
import marshal
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from subspacelab import forkserver
from subspacelab.console import DRIVER_ENV, LOG_DIR, PROGRESS_ENV

SUMMARY = "summary"
CLEAN_STAMP = Path(".dvc/tmp/subspacelab-clean")  # workspace_key() of the last clean status
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML has it
NOT_RUN = -1  # the exit code schedule() gives a chain it did not start
_RUNNING = re.compile(r"^Running stage '([^']+)':")
_SKIPPED = re.compile(r"^Stage '([^']+)' (?:didn't change, skipping|is cached)")


@dataclass
class Chain:
    """One study's stages, in order, and the chains that must finish first."""

    slug: str
    stages: list[str]
    after: set[str] = field(default_factory=set)


def _stages(root: Path) -> dict[str, Any]:
    """dvc.yaml's stages, parsed by libyaml."""
    return yaml.load((root / "dvc.yaml").read_text(), Loader=_LOADER)["stages"]


def chains(root: Path) -> dict[str, Chain]:
    """Every study's chain, in dvc.yaml's order, read from dvc.yaml (which the registry
    generates): no study is imported. ``after`` holds the studies whose outputs a chain reads."""
    stages = _stages(root)
    out: dict[str, Chain] = {}
    owner: dict[str, str] = {}
    for name, stage in stages.items():
        words = stage["cmd"].split()
        if name == SUMMARY:
            continue
        if words[:3] != ["python", "-m", "stages"] or len(words) != 5:
            raise ValueError(f"dvc.yaml: stage {name} runs {stage['cmd']!r}, not a study step")
        slug = words[4]
        out.setdefault(slug, Chain(slug, [])).stages.append(name)
        for entry in stage.get("outs", []):
            owner[next(iter(entry)) if isinstance(entry, dict) else entry] = slug
    for name, stage in stages.items():
        if name == SUMMARY:
            continue
        slug = stage["cmd"].split()[4]
        for dep in stage.get("deps", []):
            other = owner.get(dep)
            if other is not None and other != slug:
                out[slug].after.add(other)
    return out


def _stat_entries(path: Path, rel: str) -> Iterator[str]:
    """``rel inode mtime_ns size`` of a file, of every file under a directory, or ``rel -``."""
    try:
        st = path.stat()
    except FileNotFoundError:
        yield f"{rel} -"
        return
    if not path.is_dir():
        yield f"{rel} {st.st_ino} {st.st_mtime_ns} {st.st_size}"
        return
    for sub, _, files in sorted(os.walk(path)):
        for name in sorted(files):
            f = Path(sub) / name
            st = f.stat()
            yield f"{f.relative_to(path.parent)} {st.st_ino} {st.st_mtime_ns} {st.st_size}"


def workspace_key(root: Path) -> str:
    """A digest of what ``dvc status`` reads: dvc.yaml, dvc.lock, params.yaml, DVC's config and
    ignore file, and every stage's dependencies and outputs (directories walked), each file by
    its inode, modification time and size."""
    import hashlib

    stages = _stages(root)
    paths = {"dvc.yaml", "dvc.lock", "params.yaml", ".dvc/config", ".dvcignore"}
    for stage in stages.values():
        for kind in ("deps", "outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                paths.add(next(iter(entry)) if isinstance(entry, dict) else entry)
    digest = hashlib.sha256()
    for rel in sorted(paths):
        for line in _stat_entries(root / rel, rel):
            digest.update(f"{line}\n".encode())
    return digest.hexdigest()


def _remember_clean(root: Path, key: str) -> None:
    stamp = root / CLEAN_STAMP
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key)


class _DirectGet:
    """``dpath`` for DVC's params lookups: a plain dotted key is looked up directly instead of
    by walking every value of params.yaml (DVC does that once per key and stage); anything
    else, a missing key included, goes to dpath itself."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def get(self, obj: Any, glob: Any, separator: str = "/", **kwargs: Any) -> Any:
        """The value at ``glob`` in ``obj``."""
        if kwargs or not isinstance(glob, str) or any(c in glob for c in "*?[]"):
            return self._real.get(obj, glob, separator=separator, **kwargs)
        cur = obj
        for part in glob.split(separator):
            if isinstance(cur, dict) and part in cur:
                cur = cur[part]
            elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
                cur = cur[int(part)]
            else:
                return self._real.get(obj, glob, separator=separator)
        return cur


def _fast_dvc() -> None:
    """Two shortcuts for this process's DVC, results unchanged: each YAML text is parsed once
    (DVC parses params.yaml once per stage, dvc.yaml and dvc.lock again after each lock; copies
    of the first parse are handed out), and params are looked up by key (:class:`_DirectGet`)."""
    from dvc.dependency import param
    from dvc.utils import strictyaml
    from dvc.utils.serialize import _yaml

    parse = _yaml.parse_yaml
    if getattr(parse, "_subspacelab_memo", False):
        return
    memo: dict[tuple[str, str, str], tuple[bytes | None, Any]] = {}

    def cached(text: str, path: str, typ: str = "safe") -> Any:
        if typ != "safe":  # round-trip parses carry comments for rewriting: never shared
            return parse(text, path, typ)
        key = (str(path), text, typ)
        if key not in memo:
            data = parse(text, path, typ)
            try:  # plain YAML data: marshal copies it in C, far faster than deepcopy
                memo[key] = (marshal.dumps(data), None)
            except ValueError:  # a date or another type marshal does not know
                memo[key] = (None, data)
        raw, data = memo[key]
        return marshal.loads(raw) if raw is not None else copy.deepcopy(data)

    cached._subspacelab_memo = True  # type: ignore[attr-defined]
    _yaml.parse_yaml = cached
    strictyaml.parse_yaml = cached  # dvc.yaml and dvc.lock (imported there by name)
    param.dpath = _DirectGet(param.dpath)


class _LockDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """libyaml's emitter with DVC's spelling of null (an empty value)."""


_LockDumper.add_representer(
    type(None), lambda d, _: d.represent_scalar("tag:yaml.org,2002:null", "")
)
_LockDumper.add_representer(  # DVC's lock entries, in their order
    OrderedDict, lambda d, data: d.represent_mapping("tag:yaml.org,2002:map", list(data.items()))
)


@contextmanager
def _lock_for_update(path: Any, fs: Any = None) -> Iterator[Any]:
    """DVC's ``modify_yaml`` for dvc.lock, through libyaml and written atomically (DVC's own
    round-trip parse and dump of a 145-stage lock cost ~5 s per stage); any other file goes to
    DVC's. The lab driver puts the entries back in DVC's own layout at the end of a run."""
    from dvc.utils.serialize import modify_yaml

    if (fs is not None and type(fs).__name__ != "LocalFileSystem") or Path(path).name != "dvc.lock":
        with modify_yaml(path, fs=fs) as data:
            yield data
        return
    target = Path(path)
    data = yaml.load(target.read_text(), Loader=_LOADER) if target.is_file() else {}
    data = data or {}
    yield data
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(yaml.dump(data, Dumper=_LockDumper, sort_keys=False, allow_unicode=True))
    os.replace(tmp, target)


def fast_dvc_job() -> None:
    """The shortcuts of :func:`_fast_dvc` for a ``dvc repro`` job, and dvc.lock written through
    :func:`_lock_for_update`: the same entries, a fraction of the per-stage cost."""
    from dvc import dvcfile

    _fast_dvc()
    dvcfile.modify_yaml = _lock_for_update  # type: ignore[assignment]


def _status_when_free(repo: Any, poll_s: float = 2.0) -> dict[str, Any]:
    """``dvc status``, waiting (one console line) while another lab or flow runs stages: DVC
    holds a lock on each running stage's outputs, which its status check would otherwise fail
    on, as ``dvc --wait-for-lock repro`` waits for the repository's lock."""
    from dvc.lock import LockError

    said = False
    while True:
        try:
            return repo.status()
        except LockError as exc:
            if not said:
                who = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
                print(f"lab: waiting, DVC outputs are busy ({who})", file=sys.stderr, flush=True)
                said = True
            time.sleep(poll_s)


def inspect(root: Path) -> tuple[set[str], list[str]]:
    """What ``dvc status`` reports as changed, and the stage order of a sequential
    ``dvc repro`` (DVC's plan), from one in-process DVC repository."""
    _fast_dvc()
    from dvc.repo import Repo
    from dvc.repo.reproduce import collect_stages, get_active_graph, plan_repro

    with Repo(str(root)) as repo:
        changed = {name.rpartition(":")[2] for name in _status_when_free(repo)}
        stages = collect_stages(repo, [str(root / "dvc.yaml")])
        order = [st.addressing for st in plan_repro(get_active_graph(repo.index.graph), stages)]
    return changed, order


def to_run(plan: dict[str, Chain], changed: set[str]) -> list[str]:
    """Chains with a changed stage, and those that use them (transitively), in plan order."""
    wanted = {slug for slug, ch in plan.items() if changed & set(ch.stages)}
    grew = True
    while grew:
        grew = False
        for slug, ch in plan.items():
            if slug not in wanted and ch.after & wanted:
                wanted.add(slug)
                grew = True
    return [slug for slug in plan if slug in wanted]


class Console:
    """The driver's lines: numbered stage starts and ends, our warnings, errors, the end."""

    def __init__(self, total: int, out: TextIO) -> None:
        self.total = total
        self.out = out
        self.started: dict[str, tuple[int, float]] = {}
        self.ran = 0
        self.skipped = 0
        self.failed: list[str] = []
        self._lock = threading.Lock()

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def start(self, stage: str) -> None:
        """A stage's command started."""
        with self._lock:
            n = self.ran + self.skipped + len(self.failed) + len(self.started) + 1
            self.started[stage] = (n, time.perf_counter())
            self._print(f"[{n:>{len(str(self.total))}}/{self.total}] {stage}")

    def end(self, stage: str, ok: bool) -> None:
        """A started stage finished (or failed)."""
        with self._lock:
            if stage not in self.started:
                return
            n, t0 = self.started.pop(stage)
            head = f"[{n:>{len(str(self.total))}}/{self.total}] {stage}"
            took = time.perf_counter() - t0
            if ok:
                self.ran += 1
                self._print(f"{head} {took:.0f} s")
            else:
                self.failed.append(stage)
                self._print(f"{head} FAILED after {took:.0f} s: {LOG_DIR}/{stage}.log")

    def skip(self, stage: str) -> None:
        """DVC found the stage up to date."""
        with self._lock:
            self.skipped += 1

    def echo(self, line: str) -> None:
        """A line the stage meant for the console (progress, our warnings, errors)."""
        with self._lock:
            self._print(f"    {line}")


def _dvc_cmd(stages: Sequence[str]) -> list[str]:
    job = [sys.executable, "-m", "subspacelab.dvcjob"]  # DVC's CLI with fast_dvc_job()
    return [*job, "--wait-for-lock", "repro", "--single-item", *stages]


def _stage_env(progress: bool) -> dict[str, str]:
    env = dict(os.environ)
    env[DRIVER_ENV] = "1"
    if progress:
        env[PROGRESS_ENV] = "1"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


class Job:
    """One chain's DVC process; its output goes to ``logs/lab/<name>.log`` and is read for the
    stage markers."""

    def __init__(
        self, root: Path, name: str, stages: Sequence[str], con: Console, env: dict[str, str]
    ) -> None:
        self.name = name
        self.stages = list(stages)
        self.con = con
        self.log_path = root / LOG_DIR / "lab" / f"{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        self.proc = subprocess.Popen(
            _dvc_cmd(stages),
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,  # Ctrl-C reaches it through the driver, once
            # an ignored SIGINT would be inherited and the driver's SIGINT lost on the job
            preexec_fn=_sigint_default if ignored else None,
        )
        self.current: str | None = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.log_path.open("w") as log:
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
                self._marker(line.rstrip("\n"))

    def _marker(self, line: str) -> None:
        running, skipped = _RUNNING.match(line), _SKIPPED.match(line)
        if running or skipped:
            if self.current is not None:
                self.con.end(self.current, ok=True)
                self.current = None
            if running:
                self.current = running.group(1)
                self.con.start(self.current)
            else:
                self.con.skip(skipped.group(1))  # type: ignore[union-attr]
        elif line.startswith(("[", "error:")) and self.current is not None:
            self.con.echo(line)  # the stage's own console lines

    def finish(self) -> int:
        """Wait for the job; close its last stage's line. Returns DVC's exit code."""
        code = self.proc.wait()
        self.reader.join()
        if self.current is not None:
            self.con.end(self.current, ok=code == 0)
            self.current = None
        return code

    def interrupt(self, sig: int = signal.SIGINT) -> None:
        """Pass a signal to the job's whole process group (DVC and the stage it runs)."""
        if self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)


def _sigint_default() -> None:
    """In a job's child before it runs DVC: SIGINT back to its default disposition."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def _interruptible() -> Iterator[None]:
    """SIGTERM behaves as Ctrl-C (KeyboardInterrupt) while jobs run."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def schedule(
    root: Path,
    plan: dict[str, Chain],
    run: list[str],
    jobs: int,
    con: Console,
    env: dict[str, str],
    poll_s: float = 0.2,
) -> dict[str, int]:
    """Run the chains in ``run`` with at most ``jobs`` at once, each job with the environment
    ``env``; returns their exit codes."""
    waiting = list(run)
    active: dict[str, Job] = {}
    codes: dict[str, int] = {}
    with _interruptible():
        try:
            while waiting or active:
                for slug in list(waiting):
                    if len(active) >= jobs:
                        break
                    blocked = plan[slug].after & set(run)
                    if any(codes.get(b, 0) != 0 for b in blocked):
                        waiting.remove(slug)
                        codes[slug] = NOT_RUN  # a chain it needs failed
                    elif all(b in codes for b in blocked):
                        waiting.remove(slug)
                        active[slug] = Job(root, slug, plan[slug].stages, con, env)
                for slug, job in list(active.items()):
                    if job.proc.poll() is not None:
                        codes[slug] = job.finish()
                        del active[slug]
                if waiting or active:
                    time.sleep(poll_s)
        except KeyboardInterrupt:
            for job in active.values():
                job.interrupt()
            deadline = time.monotonic() + 60
            for job in active.values():
                try:
                    job.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    con.echo(f"error: {job.name} did not stop within 60 s of Ctrl-C: killed")
                    job.interrupt(signal.SIGKILL)
                job.finish()
            raise
    return codes


def _last_compute(root: Path, slug: str) -> float:
    """A chain's compute in its last recorded run (``timing_s.total`` of its metrics.json,
    which git tracks), 0 when there is none."""
    try:
        doc = json.loads((root / "reports" / slug / "metrics.json").read_text())
        return float(doc["timing_s"]["total"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def critical_first(root: Path, plan: dict[str, Chain], run: list[str]) -> list[str]:
    """``run`` with the longest remaining work first: a chain's last recorded compute plus the
    longest path through the chains that use it (list scheduling on the critical path, so the
    lab does not end on one long chain started last while the other lanes idle)."""
    users = {s: [t for t in run if s in plan[t].after] for s in run}
    tails: dict[str, float] = {}

    def tail(slug: str) -> float:
        if slug not in tails:
            below = max((tail(t) for t in users[slug]), default=0.0)
            tails[slug] = _last_compute(root, slug) + below
        return tails[slug]

    return sorted(run, key=lambda s: (-tail(s), run.index(s)))


def _upstream(plan: dict[str, Chain], slug: str) -> set[str]:
    found: set[str] = set()
    stack = list(plan[slug].after)
    while stack:
        cur = stack.pop()
        if cur not in found:
            found.add(cur)
            stack.extend(plan[cur].after)
    return found


def lock_order(root: Path, order: Sequence[str]) -> None:
    """Put dvc.lock's stage entries in ``order`` (a sequential ``dvc repro``'s), rewriting the
    file the way DVC does; the entries themselves are untouched."""
    path = root / "dvc.lock"
    if not path.is_file():
        return
    from dvc.utils.serialize import modify_yaml

    rank = {name: i for i, name in enumerate(order)}
    with modify_yaml(str(path)) as data:
        entries = data.get("stages", {})
        ranked = sorted(entries, key=lambda s: (rank.get(s, len(rank)), s))
        if ranked != list(entries):
            for name in ranked:
                entries.move_to_end(name)


def run_lab(root: Path, slugs: Sequence[str] | None, jobs: int, out: TextIO = sys.stderr) -> int:
    """Reproduce the chosen studies (all by default, then the summary); 0 when all succeeded."""
    t0 = time.perf_counter()
    everything = chains(root)
    unknown = sorted(set(slugs or ()) - set(everything))
    if unknown:
        raise KeyError(f"unknown study {unknown[0]!r}; known: {', '.join(everything)}")
    chosen = list(slugs) if slugs else list(everything)
    plan = {slug: everything[slug] for slug in chosen}
    for slug in chosen:  # a chosen study's upstream studies run first (DVC needs their outputs)
        for used in _upstream(everything, slug):
            plan.setdefault(used, everything[used])
    plan = {slug: ch for slug, ch in everything.items() if slug in plan}
    with_summary = set(chosen) >= set(everything)
    total = sum(len(c.stages) for c in plan.values()) + int(with_summary)
    con = Console(total, out)
    key = workspace_key(root)
    stamp = root / CLEAN_STAMP
    if stamp.is_file() and stamp.read_text() == key:
        took = time.perf_counter() - t0
        print(f"lab: {total} stages up to date ({took:.1f} s; no file changed since)", file=out)
        return 0
    changed, order = inspect(root)
    if not changed:
        _remember_clean(root, key)
    run = critical_first(root, plan, to_run(plan, changed))
    summary = with_summary and (bool(run) or SUMMARY in changed)
    if not run and not summary:
        print(f"lab: {total} stages up to date ({time.perf_counter() - t0:.1f} s)", file=out)
        return 0
    print(
        f"lab: {len(run)} of {len(plan)} chain(s) to check, {jobs} at a time; logs in {LOG_DIR}/",
        file=out,
        flush=True,
    )
    progress = out.isatty()
    if summary:  # the summary is one more job, after every chain that runs
        plan = {**plan, SUMMARY: Chain(SUMMARY, [SUMMARY], after=set(run))}
        run = [*run, SUMMARY]
    try:
        log = root / LOG_DIR / "lab" / "forkserver.log"
        with forkserver.started(_stage_env(progress), log) as env:
            codes = schedule(root, plan, run, max(1, jobs), con, env)
    except KeyboardInterrupt:
        if con.ran:
            lock_order(root, order)
        print(
            f"lab: interrupted after {time.perf_counter() - t0:.0f} s; {con.ran} stage(s) "
            "finished and recorded, the interrupted ones left nothing behind",
            file=out,
        )
        return 130
    failed = sorted(slug for slug, code in codes.items() if code not in (0, NOT_RUN))
    if con.ran:
        lock_order(root, order)
    untouched = sum(len(ch.stages) for slug, ch in plan.items() if slug not in run)
    up_to_date = con.skipped + untouched + int(with_summary and not summary)
    line = f"lab: {con.ran} stage(s) ran, {up_to_date} up to date"
    unreached = total - con.ran - up_to_date - len(con.failed)
    if failed:
        if unreached:
            line += f", {unreached} not reached"
        logs = ", ".join(f"{LOG_DIR}/lab/{s}.log" for s in failed)
        took = time.perf_counter() - t0
        print(f"{line}; FAILED: {', '.join(failed)} in {took:.0f} s; see {logs}", file=out)
        return 1
    key = workspace_key(root)  # what the next run's status check would see
    if with_summary and not inspect(root)[0]:
        _remember_clean(root, key)
    where = "reports/SUMMARY.md" if with_summary else "reports/<study>/"
    took = time.perf_counter() - t0
    print(f"{line} in {took:.0f} s; front page {where}, logs {LOG_DIR}/, runs: make ui", file=out)
    return 0
