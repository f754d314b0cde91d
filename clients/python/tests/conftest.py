"""Fixtures: a real `tmax serve` (this repository's CLI, on the container engine) per test module.

The servers label their containers with the test run's id (TMAX_TEST_RUN, set by the node test that drives
pytest), so the suite's leak check sees them; each server's job id lets a test ask the engine whether a
session's container is really gone.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "clients" / "python"))

EXAMPLES = ROOT / "examples" / "tasks"
SHARED_TASKS = Path(os.environ.get("TMAX_SHARED_TASKS", ROOT.parent / "shared" / "tasks" / "tb2-offline"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, dataset: Path, *args: str):
        self.port = free_port()
        self.job_dir = Path(tempfile.mkdtemp(prefix="tmax-serve-py-"))
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(self.job_dir / "serve.log", "w+")
        cmd = ["node", "--import", "tsx", str(ROOT / "src" / "cli" / "main.ts"), "serve", "-d", str(dataset), "--port", str(self.port), "--job-dir", str(self.job_dir), *args]
        # a loaded engine can miss the server's start-up check: that one failure is retried, nothing else
        for attempt in range(3):
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, "TMAX_PULL": os.environ.get("TMAX_PULL", "never")})
            if self._wait_healthy():
                break
            if attempt == 2 or "cannot reach the container engine" not in self.output():
                raise RuntimeError(f"tmax serve exited {self.proc.returncode}: {self.output()}")
            time.sleep(5)
        self.job_id = (self.job_dir / ".tmax-job-id").read_text().strip()

    def _wait_healthy(self) -> bool:
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if json.loads(r.read()) == {"status": "healthy"}:
                        return True
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"tmax serve did not answer: {self.output()}")

    def output(self) -> str:
        self.log.flush()
        return (self.job_dir / "serve.log").read_text()

    def containers(self) -> list:
        """Names of this server's containers (running or not) on the engine."""
        out = subprocess.run(["podman", "ps", "-a", "--filter", f"label=io.tmax.job={self.job_id}", "--format", "{{.Names}}"], capture_output=True, text=True, check=True)
        return [line for line in out.stdout.split("\n") if line]

    def stop(self) -> int:
        """SIGTERM, as a scheduler would: the server removes every session's sandbox, then exits."""
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=90)
        finally:
            self.log.close()

    def cleanup(self) -> None:
        shutil.rmtree(self.job_dir, ignore_errors=True)


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.25) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@pytest.fixture(scope="module")
def examples_server():
    server = Server(EXAMPLES, "--max-sessions", "4")
    yield server
    assert server.stop() in (0, 143), server.output()
    assert server.containers() == [], "containers left after shutdown"
    server.cleanup()


@pytest.fixture(scope="module")
def shared_server():
    if not SHARED_TASKS.is_dir():
        pytest.skip(f"{SHARED_TASKS} not found (shared TB2 tasks are not part of a fresh clone)")
    # the reference solutions run as one exec action; some wait out apt-get's retries without a network
    server = Server(SHARED_TASKS, "--max-sessions", "2", "--command-timeout", "900")
    yield server
    assert server.stop() in (0, 143), server.output()
    assert server.containers() == []
    server.cleanup()


@pytest.fixture(scope="module")
def guarded_server():
    """A server with a token and room for one session (auth, busy, disconnect, idle tests)."""
    token = secrets.token_hex(16)
    server = Server(EXAMPLES, "--max-sessions", "1", "--token", token, "--idle-timeout", "3", "--max-steps", "1")
    server.token = token
    yield server
    assert server.stop() in (0, 143), server.output()
    assert server.containers() == []
    server.cleanup()
