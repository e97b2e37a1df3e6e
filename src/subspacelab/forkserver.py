"""A fork server for the lab's stages: torch, Lightning, MLflow and the studies imported once,
every stage a ``fork()`` of that process instead of a fresh interpreter.

Each stage used to pay its imports anew (torch ~1.8 s, Lightning ~4.5 s more for a training
step, MLflow and matplotlib for the report): at 145 stages that is minutes of a lab run spent
importing. The lab driver (:func:`subspacelab.lab.run_lab`) starts one server per run
(:func:`started`), passes its socket to the DVC jobs in ``SUBSPACELAB_FORKSERVER``, and the jobs
(:mod:`subspacelab.dvcjob`) hand DVC's ``python -m stages ...`` commands to it (:func:`run`)
instead of starting a process. What runs is the same: the server's child switches to the
command's working directory, environment and standard streams (passed over the socket), puts
the directory first on ``sys.path`` and runs the module as ``__main__``, exactly as
``python -m`` does, and its exit code travels back to DVC. Anything else, or no server, runs as
before.

Process hygiene, because a fork copies one thread of a process:

* the server refuses to serve (every command falls back to a process) if importing started a
  thread, and never runs a torch operation itself, so no thread pool exists to be copied;
* the server lives in its own session: a terminal's Ctrl-C reaches the driver, which passes it
  to the jobs, and each job passes SIGINT/SIGTERM on to its stage's child;
* a child whose job disappears (killed, its connection closed) interrupts itself, so no stage
  outlives the lab;
* the server reaps its children as they end (SIGCHLD ignored there), and a child restores every
  signal's default disposition before it runs the stage.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

ENV = "SUBSPACELAB_FORKSERVER"  # the server's socket path, set by the lab driver for its jobs
STAGES = "stages"  # the one module the jobs hand over: ``python -m stages <step> <study>``
_PRELOAD = (
    "numpy",
    "scipy.sparse",
    "scipy.linalg",
    "scipy.stats",
    "sklearn.neighbors",
    "torch",
    "lightning",
    "mlflow",
    "matplotlib.figure",
    "safetensors.torch",
    "subspacelab.cli",
    "subspacelab.runner",
)
_HEADER = struct.Struct("!I")
_STD_FDS = (0, 1, 2)
_ORPHAN_GRACE_S = 30.0  # a child whose job is gone: SIGINT, then SIGKILL after this long


# ---------------------------------------------------------------- wire format


def _send(sock: socket.socket, message: Mapping[str, Any], fds: Sequence[int] = ()) -> None:
    body = json.dumps(message).encode()
    data = _HEADER.pack(len(body)) + body
    if fds:
        sent = socket.send_fds(sock, [data], list(fds))
        sock.sendall(data[sent:])
    else:
        sock.sendall(data)


def _exactly(sock: socket.socket, size: int, head: bytes = b"") -> bytes | None:
    buf = bytearray(head)
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _receive(sock: socket.socket, with_fds: int = 0) -> tuple[dict[str, Any] | None, list[int]]:
    """One message (and up to ``with_fds`` descriptors); (None, []) when the peer has closed."""
    fds: list[int] = []
    if with_fds:
        head, fds, _flags, _addr = socket.recv_fds(sock, 65536, with_fds)
        if not head:
            return None, fds
    else:
        head = b""
    first = _exactly(sock, _HEADER.size, head[: _HEADER.size])
    if first is None:
        return None, fds
    (size,) = _HEADER.unpack(first)
    body = _exactly(sock, size, head[_HEADER.size :])
    return (json.loads(body) if body is not None else None), fds


# ---------------------------------------------------------------- the server


def preload() -> list[str]:
    """Import what stages use; returns the names that failed to import (a missing optional
    library costs nothing here: the stage that needs it reports it as it would anyway)."""
    import importlib

    missing = []
    for name in _PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    from subspacelab.registry import studies

    studies()  # every study's module
    return missing


def serve(path: Path, listener: socket.socket | None = None) -> None:
    """Accept commands on the Unix socket ``path`` (or the bound ``listener``) until killed."""
    if listener is None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    while True:
        conn, _ = listener.accept()
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork() == 0:
            listener.close()
            _child(conn)  # never returns
        conn.close()


def _watch(conn: socket.socket) -> None:
    """In a child: when the job's end of the connection closes, interrupt the stage, then kill
    it after a grace period."""
    with suppress(OSError):
        while conn.recv(64):
            pass
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(_ORPHAN_GRACE_S)
    os._exit(137)


def _child(conn: socket.socket) -> None:
    """Become the command: streams, directory, environment, ``python -m <module> <args>``."""
    code = 1
    try:
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGPIPE, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        request, fds = _receive(conn, with_fds=len(_STD_FDS))
        if request is None or len(fds) != len(_STD_FDS):
            os._exit(1)
        command = " ".join([request["module"], *request["args"]])
        print(f"forkserver: {os.getpid()} runs {command}", flush=True)  # to the server's log
        for fd, target in zip(fds, _STD_FDS, strict=True):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        _send(conn, {"pid": os.getpid()})
        threading.Thread(target=_watch, args=(conn,), daemon=True).start()
        code = _run_module(request["module"], request["args"], request["cwd"])
    except BaseException:  # a child must always report and exit
        import traceback

        traceback.print_exc()
    finally:
        with suppress(BaseException):
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        # the job closes the connection once it has the code: the watcher must not interrupt
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with suppress(OSError):
            _send(conn, {"code": code})
        os._exit(code)


def _run_module(module: str, args: Sequence[str], cwd: str) -> int:
    """``python -m module args`` in this process: the directory first on ``sys.path``, the module
    run as ``__main__``; its exit code (``SystemExit``'s, 130 on Ctrl-C, 1 on an exception)."""
    import runpy

    sys.path.insert(0, cwd)
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BaseException:
        import traceback

        traceback.print_exc()
        return 1
    return 0


def main(argv: Sequence[str]) -> int:
    """``python -m subspacelab.forkserver <socket>``: bind first (jobs may connect while the
    imports run: they wait in the backlog), import, then serve."""
    path = Path(argv[0])
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(64)
    missing = preload()
    if missing:
        print(f"forkserver: not preloaded: {', '.join(missing)}", file=sys.stderr)
    if threading.active_count() > 1:  # a fork would copy a process with half its threads
        print("forkserver: an import started a thread; not serving", file=sys.stderr)
        listener.close()
        path.unlink(missing_ok=True)
        return 1
    serve(path, listener)
    return 0


# ---------------------------------------------------------------- the driver's side


@contextmanager
def started(env: Mapping[str, str], log: Path) -> Iterator[dict[str, str]]:
    """A server for the duration of the block; yields ``env`` with :data:`ENV` set once the
    server listens (without it if the server could not start: the jobs then start processes).
    The server is stopped (SIGKILL: it holds no state) and its socket removed on the way out."""
    tmp = Path(tempfile.mkdtemp(prefix="subspacelab-"))
    path = tmp / "stages.sock"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "subspacelab.forkserver", str(path)],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a terminal's Ctrl-C goes to the driver, not here
        )
    deadline = time.monotonic() + 30  # binding comes before the imports: a fraction of that
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield {**env, ENV: str(path)} if path.exists() else dict(env)
    finally:
        with suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        path.unlink(missing_ok=True)
        with suppress(OSError):
            tmp.rmdir()


# ---------------------------------------------------------------- a job's side


def run(
    path: str, module: str, args: Sequence[str], cwd: str, env: Mapping[str, str]
) -> int | None:
    """Run ``python -m module args`` through the server at ``path`` with this process's
    standard streams; its exit code, or None when no server answers (run it yourself then).
    SIGINT and SIGTERM received meanwhile are passed on to the stage."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    with sock:
        sys.stdout.flush()
        sys.stderr.flush()
        request = {"module": module, "args": list(args), "cwd": cwd, "env": dict(env)}
        try:
            _send(sock, request, _STD_FDS)
            hello, _ = _receive(sock)
        except OSError:
            hello = None
        if hello is None:  # the server went away before the stage started
            return None
        pid = int(hello["pid"])

        def forward(signum: int, _frame: Any) -> None:
            with suppress(ProcessLookupError):
                os.kill(pid, signum)

        with _handlers(forward):  # a handled signal does not interrupt the wait (PEP 475)
            try:
                done, _ = _receive(sock)
            except OSError:
                done = None
        if done is None:  # the child died without a word: killed by a signal
            print(f"error: stage process {pid} was killed", file=sys.stderr)
            return 137
        return int(done["code"])


@contextmanager
def _handlers(handler: Any) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
