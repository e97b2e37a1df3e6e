"""``python -m subspacelab lab``: chains side by side, DVC the one record, a readable console."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import yaml
from dvc.utils.serialize import dumps_yaml, parse_yaml_for_update

from subspacelab import registry
from subspacelab.lab import Chain, to_run, workspace_key
from tests.helpers import default_sigint, dvc, dvc_workspace, interrupt_when_computing

STAGES = [f"{s}_{t}" for s in ("fake", "fake2") for t in ("download", "fit", "report")]


def _env(ws: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        registry.PLUGINS_ENV: "tests.fake_study:FAKE,tests.fake_study:FAKE2",
        "PYTHONPATH": f"{ws / 'src'}:{ws}",
        **extra,
    }


def lab(ws: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "subspacelab", "lab", *args],
        cwd=ws,
        env=_env(ws, **env),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _outputs_only(lock: dict[str, Any]) -> dict[str, Any]:
    """dvc.lock without the hashes of what the runs wrote: _meta.json and metrics.json record
    wall times, so those differ between any two runs, sequential or not."""
    out = {}
    for name, entry in lock["stages"].items():
        entry = dict(entry)
        for key in ("deps", "outs"):
            entry[key] = [
                {"path": d["path"]} if d["path"].startswith(("data/", "models/", "reports/")) else d
                for d in entry.get(key, [])
            ]
        out[name] = entry
    return out


def _files(ws: Path) -> dict[str, bytes]:
    """Everything the chains wrote that does not record a time."""
    return {
        str(p.relative_to(ws)): p.read_bytes()
        for top in ("data", "models", "reports")
        for p in sorted((ws / top).rglob("*"))
        if p.is_file() and p.name not in ("_meta.json", "metrics.json", "SUMMARY.md")
    }


@pytest.mark.slow
def test_parallel_lab_records_what_sequential_dvc_repro_does(tmp_path: Path) -> None:
    seq = dvc_workspace(tmp_path / "seq")
    dvc(seq, "repro")
    par = dvc_workspace(tmp_path / "par")
    first = lab(par, "--jobs", "2")
    assert first.returncode == 0, first.stderr
    seq_lock = yaml.safe_load((seq / "dvc.lock").read_text())
    par_lock = yaml.safe_load((par / "dvc.lock").read_text())
    assert list(par_lock["stages"]) == list(seq_lock["stages"])  # same entries, same order
    assert _outputs_only(par_lock) == _outputs_only(seq_lock)
    assert _files(par) == _files(seq)
    text = (par / "dvc.lock").read_text()  # DVC's own layout, though jobs wrote it via libyaml
    assert dumps_yaml(parse_yaml_for_update(text, "dvc.lock")) == text
    assert "Data and pipelines are up to date" in dvc(par, "status").stdout

    # the console: a start and an end line per stage, a header and an end line
    lines = first.stderr.strip().splitlines()
    stages = [*STAGES, "summary"]
    for stage in stages:
        assert sum(line.split("] ", 1)[-1].split(" ")[0] == stage for line in lines) == 2, lines
    assert len(lines) <= 4 * len(stages)
    assert lines[-1].startswith("lab: 7 stage(s) ran, 0 up to date")
    assert (par / "logs/fake_fit.log").is_file()
    assert (par / "logs/lab/fake.log").is_file()
    served = (par / "logs/lab/forkserver.log").read_text()  # every stage forked, none spawned
    assert served.count(" runs stages ") == len(stages), served

    second = lab(par, "--jobs", "2")
    assert second.returncode == 0, second.stderr
    assert second.stderr.strip().splitlines() == [
        line for line in second.stderr.strip().splitlines() if "up to date" in line
    ]
    assert len(second.stderr.strip().splitlines()) == 1
    assert "no file changed since" in second.stderr  # the full run left its clean status

    # one changed param: that chain and the summary rerun, the other chain is not even checked
    params = yaml.safe_load((par / "params.yaml").read_text())
    params["fake2"]["mini"]["fit"]["ridge"] = 0.5
    params["fake"]["full"] = {**params["fake"]["full"], "fit": {"ridge": 9.0}}  # other profile
    (par / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = lab(par, "--jobs", "2")
    assert third.returncode == 0, third.stderr
    ran = [line.split()[1] for line in third.stderr.splitlines() if line.endswith(" s")]
    assert sorted(ran) == ["fake2_fit", "fake2_report", "summary"]


@pytest.mark.slow
def test_ctrl_c_stops_every_job_and_records_nothing_half_done(tmp_path: Path) -> None:
    ws = dvc_workspace(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "subspacelab", "lab", "--jobs", "2"],
        cwd=ws,
        env=_env(ws, FAKE_HANG="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    interrupt_when_computing(ws, proc, need_all=True)
    lock = ws / "dvc.lock"
    assert not lock.exists() or "download" not in lock.read_text()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.slow
def test_sigterm_stops_a_driver_started_with_sigint_ignored(tmp_path: Path) -> None:
    # `nohup subspacelab lab &`: the driver and, by inheritance, its jobs would ignore the SIGINT
    # the driver passes on; the jobs must still stop at once, not after the 60 s SIGKILL fallback
    ws = dvc_workspace(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "subspacelab", "lab", "--jobs", "2"],
        cwd=ws,
        env=_env(ws, FAKE_HANG="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ignore_sigint,
    )
    err = interrupt_when_computing(ws, proc, need_all=True, sig=signal.SIGTERM)
    assert "did not stop" not in err


def test_workspace_key_sees_every_file_dvc_status_reads(tmp_path: Path) -> None:
    """The remembered clean status holds only while no dependency, output, params.yaml or
    dvc.lock changes: an edit of the same size, a new file in an output folder and a deleted
    output each change the key; a file no stage names does not."""
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  a_fit:\n    cmd: python -m stages fit a\n    deps: [src/a.py]\n"
        "    outs: [models/a]\n    metrics: [{reports/a/metrics.json: {cache: false}}]\n"
    )
    for rel, text in [
        ("dvc.lock", "x"),
        ("params.yaml", "a: 1\n"),
        ("src/a.py", "one"),
        ("models/a/w.bin", "w"),
        ("reports/a/metrics.json", "{}"),
        ("notes.txt", "n"),
    ]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    key = workspace_key(tmp_path)
    (tmp_path / "notes.txt").write_text("other")
    assert workspace_key(tmp_path) == key

    def changes(edit: Any) -> None:
        nonlocal key
        edit()
        new = workspace_key(tmp_path)
        assert new != key
        key = new

    src = tmp_path / "src/a.py"
    changes(lambda: os.utime(src, ns=(1, src.stat().st_mtime_ns + 1)))  # same size, new mtime
    changes(lambda: (tmp_path / "models/a/extra.bin").write_text("e"))
    changes(lambda: (tmp_path / "reports/a/metrics.json").unlink())
    changes(lambda: (tmp_path / "params.yaml").write_text("a: 2\n"))
    changes(lambda: (tmp_path / "dvc.lock").write_text("y"))


def test_jobs_write_dvc_lock_entries_as_dvc_does(tmp_path: Path) -> None:
    """A job's libyaml update of dvc.lock holds DVC's entries; DVC's own rewrite of it gives
    DVC's layout byte for byte (nulls, quoting, long strings); other files go to DVC."""
    from subspacelab.lab import _lock_for_update

    text = (Path(__file__).parents[1] / "dvc.lock").read_text()
    lock = tmp_path / "dvc.lock"
    lock.write_text(text)
    with _lock_for_update(str(lock)) as data:
        data["stages"]["extra"] = OrderedDict(  # as DVC's to_lockfile gives it
            [("cmd", "x"), ("params", OrderedDict([("params.yaml", {"b": 1, "a": None})]))]
        )
    extra = yaml.safe_load(lock.read_text())["stages"]["extra"]
    assert list(extra) == ["cmd", "params"]
    assert list(extra["params"]["params.yaml"].items()) == [("b", 1), ("a", None)]
    with _lock_for_update(str(lock)) as data:
        del data["stages"]["extra"]
    assert yaml.safe_load(lock.read_text()) == yaml.safe_load(text)
    assert dumps_yaml(parse_yaml_for_update(lock.read_text(), "dvc.lock")) == text
    assert not list(tmp_path.glob(".dvc.lock.*"))  # written atomically, nothing left over
    other = tmp_path / "other.yaml"
    other.write_text("a: 1  # kept\n")
    with _lock_for_update(str(other)) as data:
        data["b"] = 2
    assert other.read_text() == "a: 1  # kept\nb: 2\n"  # DVC's round trip keeps comments


def test_the_longest_remaining_chain_starts_first(tmp_path: Path) -> None:
    """Chains are started longest remaining path first (recorded compute plus the chains that
    use them), ties in plan order; a chain without a record counts 0."""
    from subspacelab.lab import critical_first

    for slug, total in [("a", 10), ("b", 50), ("c", 45), ("d", 30)]:
        (tmp_path / "reports" / slug).mkdir(parents=True)
        doc = {"timing_s": {"total": total}}
        (tmp_path / "reports" / slug / "metrics.json").write_text(json.dumps(doc))
    plan = {
        "a": Chain("a", ["a_x"]),
        "b": Chain("b", ["b_x"]),
        "c": Chain("c", ["c_x"]),
        "d": Chain("d", ["d_x"], after={"a"}),
        "e": Chain("e", ["e_x"]),
    }
    # a's path is 10 + 30 = 40: after b (50) and c (45), before d (30); e has no record
    assert critical_first(tmp_path, plan, ["a", "b", "c", "d", "e"]) == ["b", "c", "a", "d", "e"]


def test_chains_that_use_a_changed_one_rerun_too() -> None:
    plan = {
        "a": Chain("a", ["a_x", "a_y"]),
        "b": Chain("b", ["b_x"], after={"a"}),
        "c": Chain("c", ["c_x"], after={"b"}),
        "d": Chain("d", ["d_x"]),
    }
    assert to_run(plan, {"a_y"}) == ["a", "b", "c"]
    assert to_run(plan, {"d_x", "summary"}) == ["d"]
    assert to_run(plan, set()) == []


def test_status_waits_while_another_lab_holds_the_outputs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A second `make lab` while another runs stages waits for DVC's output locks (one line),
    not a LockError traceback."""
    from dvc.lock import LockError

    from subspacelab.lab import _status_when_free

    class Busy:
        calls = 0

        def status(self) -> dict[str, object]:
            self.calls += 1
            if self.calls < 3:
                raise LockError("'data/x' is busy, it is being blocked by:\n  (PID 1): dvc repro")
            return {"x_fit": []}

    repo = Busy()
    assert _status_when_free(repo, poll_s=0.01) == {"x_fit": []}
    assert repo.calls == 3
    assert capsys.readouterr().err.count("waiting, DVC outputs are busy ((PID 1)") == 1
