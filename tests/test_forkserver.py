"""The stage fork server: a command run through it behaves as ``python -m <module>`` (streams,
directory, environment, arguments, exit code), signals reach the stage, a stage whose job dies
stops, and without a server the caller is told to start a process itself. The lab's parallel
run against a sequential ``dvc repro`` (tests/test_lab.py) covers it inside DVC."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from subspacelab import forkserver

SERVE = "import sys; from pathlib import Path; from subspacelab.forkserver import serve; " + (
    "serve(Path(sys.argv[1]))"
)


def _wait_for(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """A server without the preloaded imports (the protocol is the same), its socket path."""
    path = tmp_path / "s.sock"
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(path)], start_new_session=True, env=dict(os.environ)
    )
    _wait_for(path.exists)
    yield str(path)
    proc.kill()
    proc.wait()


def _module(tmp_path: Path, name: str, body: str) -> Path:
    pkg = tmp_path / "mods"
    pkg.mkdir(exist_ok=True)
    (pkg / f"{name}.py").write_text(body)
    return pkg


def test_a_command_runs_as_python_dash_m(
    server: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "seen.json"
    cwd = _module(
        tmp_path,
        "probe",
        "import json, os, sys\n"
        "print('to stdout'); print('to stderr', file=sys.stderr)\n"
        f"json.dump({{'cwd': os.getcwd(), 'x': os.environ.get('X'), 'argv': sys.argv[1:],\n"
        f"           'name': __name__}}, open({str(out)!r}, 'w'))\n"
        "sys.exit(3)\n",
    )
    env = {**os.environ, "X": "42"}
    assert forkserver.run(server, "probe", ["a", "b c"], str(cwd), env) == 3
    seen = json.loads(out.read_text())
    assert seen == {"cwd": str(cwd), "x": "42", "argv": ["a", "b c"], "name": "__main__"}
    got = capfd.readouterr()
    assert "to stdout" in got.out and "to stderr" in got.err
    # an exception is exit code 1 with its traceback; a clean end is 0
    _module(tmp_path, "boom", "raise RuntimeError('no')\n")
    _module(tmp_path, "fine", "x = 1\n")
    assert forkserver.run(server, "boom", [], str(cwd), env) == 1
    assert "RuntimeError: no" in capfd.readouterr().err
    assert forkserver.run(server, "fine", [], str(cwd), env) == 0


def test_sigint_to_the_job_reaches_the_stage(server: str, tmp_path: Path) -> None:
    started = tmp_path / "started"
    cwd = _module(
        tmp_path,
        "slow",
        f"import time\nopen({str(started)!r}, 'w').close()\n"
        "try:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    raise SystemExit(130)\n",
    )

    def interrupt() -> None:
        _wait_for(started.exists)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    t0 = time.monotonic()
    assert forkserver.run(server, "slow", [], str(cwd), dict(os.environ)) == 130
    assert time.monotonic() - t0 < 30


def test_a_stage_whose_job_dies_stops(server: str, tmp_path: Path) -> None:
    pid_file, ended = tmp_path / "pid", tmp_path / "ended"
    cwd = _module(
        tmp_path,
        "orphan",
        f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        f"try:\n    time.sleep(60)\nfinally:\n    open({str(ended)!r}, 'w').close()\n",
    )
    job = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys; from subspacelab.forkserver import run; "
            "sys.exit(run(sys.argv[1], 'orphan', [], sys.argv[2], dict(os.environ)))",
            server,
            str(cwd),
        ]
    )
    _wait_for(pid_file.exists)
    job.kill()
    job.wait()
    _wait_for(ended.exists)  # interrupted: its cleanup ran


def test_no_server_means_start_a_process(tmp_path: Path) -> None:
    assert forkserver.run(str(tmp_path / "none.sock"), "x", [], str(tmp_path), {}) is None


def test_the_lab_driver_runs_a_preloaded_server(tmp_path: Path) -> None:
    """``started`` yields the socket once the server listens; the server imports torch and the
    studies before it serves, and serves only without stray threads."""
    with forkserver.started(dict(os.environ), tmp_path / "fs.log") as env:
        assert Path(env[forkserver.ENV]).exists()
        cwd = _module(
            tmp_path,
            "loaded",
            "import sys\nsys.exit(0 if {'torch', 'subspacelab.registry'} <= set(sys.modules) "
            "else 5)\n",
        )
        assert forkserver.run(env[forkserver.ENV], "loaded", [], str(cwd), env) == 0
    assert not Path(env[forkserver.ENV]).exists()
