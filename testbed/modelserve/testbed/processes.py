"""Start, watch and stop the server processes of the test bed."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from modelserve.testbed.polling import wait_for


class StartupError(RuntimeError):
    """A component did not come up; the message carries the tail of its log."""


LOWEST_PORT = 10_000  # below it live the components' well-known ports (5432, 6443, 9000...)


def outgoing_ports(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> range:
    """The kernel's ephemeral range: the ports it gives outgoing connections."""
    try:
        low, high = (int(word) for word in path.read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    return range(low, high + 1)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now.

    It is drawn at random from outside the kernel's ephemeral range: a port the kernel
    picked (bind to 0) can be taken by any process's outgoing connection in the moment
    before the server meant for it binds, and then that server fails with "address already
    in use". At random, from the system's entropy, so that parallel test workers do not
    draw the same sequence."""
    outgoing = outgoing_ports()
    for _ in range(100):
        port = LOWEST_PORT + secrets.randbelow(65536 - LOWEST_PORT)
        if port in outgoing:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))  # none found outside the ephemeral range: the kernel's pick
        chosen: int = sock.getsockname()[1]
        return chosen


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def http_ok(url: str) -> bool:
    """Whether GET `url` answers 200; raises OSError when nothing answers (or with an
    HTTP error), which `ManagedProcess.wait_until` takes as "not yet"."""
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class ManagedProcess:
    """One server process with its own log file and process group.

    The process group lets `stop` end whatever the server forked, so that nothing
    outlives the test session or `make dev`.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        inherit_env: bool = True,
    ) -> None:
        self.name = name
        self.stop_signal = stop_signal
        self.argv = [str(arg) for arg in argv]
        self.log_path = log_path
        self.env = {**(os.environ if inherit_env else {}), **(env or {})}
        self.cwd = cwd
        self.user = user
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._returncode: int | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=self.cwd,
            user=self.user,
            start_new_session=True,
        )

    @property
    def returncode(self) -> int | None:
        """The exit status once the process ended (negative: killed by that signal)."""
        return self._proc.poll() if self._proc is not None else self._returncode

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `ready` until it holds; fail early, with the log, if the process dies."""

        def probe() -> bool:
            if not self.running():
                code = self._proc.returncode if self._proc else None
                raise StartupError(
                    f"{self.name} exited with code {code} before {what}; "
                    f"log {self.log_path}:\n{log_tail(self.log_path)}"
                )
            try:
                return ready()
            except OSError:
                return False  # not listening yet: keep polling until the deadline

        try:
            wait_for(probe, timeout=timeout, what=what, interval=0.2)
        except TimeoutError as error:
            raise StartupError(
                f"{self.name} not {what} after {timeout:.0f}s; "
                f"log {self.log_path}:\n{log_tail(self.log_path)}"
            ) from error

    def stop(self, timeout: float = 15.0) -> None:
        """`stop_signal` (SIGTERM) to the process group, SIGKILL if it lingers."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            self._signal_group(proc.pid, self.stop_signal)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout)
        if proc is not None:
            self._returncode = proc.poll()
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL the process group at once: a crash, not a shutdown."""
        if self._proc is not None and self._proc.poll() is None:
            self._signal_group(self._proc.pid, signal.SIGKILL)
        self.stop()

    @staticmethod
    def _signal_group(pid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(pid, sig)


def descendants(pids: list[int]) -> set[int]:
    """The given processes and every process below them, read from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
) -> str:
    """Run a short command, returning stdout; raise with its output on failure."""
    args = [str(arg) for arg in argv]
    result = subprocess.run(
        args,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env} if env else None,
        cwd=cwd,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    return result.stdout


def outside_make() -> dict[str, str]:
    """This environment without what a calling make passes down (`make test` runs the
    tests): a make started from a test would otherwise print its directory and share the
    caller's jobserver."""
    inherited = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"}
    return {key: value for key, value in os.environ.items() if key not in inherited}
