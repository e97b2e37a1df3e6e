"""What a stage prints: its full log in a file, a few lines a person can read on the console.

While a step runs, everything the process writes (Python and C level: Lightning's messages,
third-party warnings, library output) goes to ``logs/<stage>.log`` and nowhere else. The console
gets only the stage's own lines: progress when attached to a terminal (or when the lab driver,
itself on a terminal, asks with ``SUBSPACELAB_PROGRESS=1``), the lab's own warnings, one end
line with the count of third-party warnings kept in the log, and errors. Third-party warnings are
filtered here, in one place, and nowhere else.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import IO, TextIO

LOG_DIR = "logs"
PROGRESS_ENV = "SUBSPACELAB_PROGRESS"  # "1": show progress lines even without a terminal
DRIVER_ENV = "SUBSPACELAB_DRIVER"  # set by the lab driver, which prints the end lines itself
_OURS = Path(__file__).resolve().parent  # the subspacelab package


def log_path(root: Path, stage: str) -> Path:
    """Where a stage's full log goes."""
    return root / LOG_DIR / f"{stage}.log"


class StageConsole:
    """Redirects the process's output to the stage's log file until :meth:`close`."""

    def __init__(self, root: Path, stage: str, *, quiet: bool = False) -> None:
        self.stage = stage
        self.root = root
        self.path = log_path(root, stage)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.third_party = 0
        self._t0 = time.perf_counter()
        self._log: IO[str] = self.path.open("w", buffering=1)
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved = (os.dup(1), os.dup(2))
        self.console: TextIO = os.fdopen(os.dup(2), "w", buffering=1)
        self.progress = not quiet and (self.console.isatty() or os.environ.get(PROGRESS_ENV) == "1")
        os.dup2(self._log.fileno(), 1)
        os.dup2(self._log.fileno(), 2)
        self._streams = (sys.stdout, sys.stderr)  # and Python's streams, wherever they point
        sys.stdout = sys.stderr = self._log
        self._showwarning = warnings.showwarning
        warnings.showwarning = self._warning
        self._open = True

    def _line(self, msg: str) -> str:
        return f"[{self.stage} {time.perf_counter() - self._t0:6.1f}s] {msg}"

    def say(self, msg: str) -> None:
        """A progress line: always in the log, on the console when someone watches it."""
        line = self._line(msg)
        print(line, file=self._log)
        if self.progress and self._open:
            print(line, file=self.console)

    def tell(self, msg: str) -> None:
        """A line the console always shows (and the log keeps)."""
        line = self._line(msg)
        print(line, file=self._log)
        print(line, file=self.console if self._open else sys.stderr)

    def _warning(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        text = warnings.formatwarning(message, category, filename, lineno, line)
        self._log.write(text)
        if _is_ours(filename):
            print(f"[{self.stage}] warning: {message}", file=self.console)
        else:
            self.third_party += 1

    def close(self, error: BaseException | None = None) -> None:
        """Restore the console; on an error, keep its traceback in the log and point to it."""
        if not self._open:
            return
        if error is not None:
            self._log.write("".join(traceback.format_exception(error)))
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = self._streams
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        for fd in self._saved:
            os.close(fd)
        warnings.showwarning = self._showwarning
        self._open = False
        self._log.close()
        if error is not None:
            if not isinstance(error, KeyboardInterrupt):
                print(f"[{self.stage}] failed; full log: {self.rel_path}", file=self.console)
            self.console.close()

    @property
    def rel_path(self) -> str:
        """The log's path relative to the repository."""
        return self.path.relative_to(self.root).as_posix()

    def done(self, wall_s: float, where: list[str]) -> None:
        """The end line (left to the lab driver when it runs the stage)."""
        n = self.third_party
        extra = f"; {n} third-party warning(s) in {self.rel_path}" if n else ""
        line = f"[{self.stage}] done in {wall_s:.1f} s -> {', '.join(where)}{extra}"
        with self.path.open("a") as log:
            print(line, file=log)
        if not os.environ.get(DRIVER_ENV) or self.third_party:
            print(line, file=self.console)
        self.console.close()


def _is_ours(filename: str) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(_OURS)
    except (OSError, ValueError):
        return False
