"""The service as a real uvicorn process, and a tiny trained bundle to serve.

``SERVICE_COMMAND`` is the container's start command (the deploy files must use the same);
:class:`ServiceProcess` runs exactly that command with this interpreter, bound to a free
loopback port instead of ``0.0.0.0:8000``, waits for ``/readyz`` and stops it with SIGTERM,
or SIGKILL when asked (crash tests). The benchmarks and the integration tests' fixtures
(``tests/integration/conftest.py``) both start services with it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx

SERVICE_COMMAND: tuple[str, ...] = (
    "uvicorn",
    "service.main:create_app",
    "--factory",
    "--http",
    "service.http:BoundedHttpProtocol",
    "--host",
    "0.0.0.0",
    "--port",
    "8000",
)
REPO_ROOT = Path(__file__).resolve().parents[1]
API_KEY = "integration-test-key"
TINY_TRAIN_TIMEOUT_S = 240.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def local_command(port: int, extra_args: Sequence[str] = (), app: str | None = None) -> list[str]:
    """``SERVICE_COMMAND`` run by this interpreter on ``127.0.0.1:port``, plus ``extra_args``;
    ``app`` replaces its app factory (``module:function``), e.g. a benchmark's variant."""
    if SERVICE_COMMAND[0] != "uvicorn":
        raise ValueError(f"SERVICE_COMMAND must start with 'uvicorn', got {SERVICE_COMMAND[0]!r}")
    args = list(SERVICE_COMMAND[1:])
    for flag, value in (("--host", "127.0.0.1"), ("--port", str(port))):
        args[args.index(flag) + 1] = value
    if app is not None:
        args[0] = app
    return [sys.executable, "-m", "uvicorn", *args, *extra_args]


def run_checked(
    command: Sequence[str], env: Mapping[str, str], timeout_s: float
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` from the repository root; raise with its output's tail if it fails."""
    result = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{command[:4]} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
            f"{result.stderr[-3000:]}"
        )
    return result


def clean_environ() -> dict[str, str]:
    """This process's environment without any service setting that could leak into a test."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PROMPTMM_") and key != "REDIS_URL"
    }


class ServiceProcess:
    """One ``uvicorn service.main:create_app --factory`` subprocess on a free loopback port.

    ``env`` holds the service settings (``PROMPTMM_*``, ``REDIS_URL``); the process output goes
    to ``log_path`` so a failed start can show why. The same object can be started again after
    a stop, on the same port, with the same settings (a restart after a crash).
    """

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        *,
        extra_args: Sequence[str] = (),
        api_key: str = API_KEY,
        app: str | None = None,
    ) -> None:
        self.env = {**clean_environ(), "PROMPTMM_API_KEY": api_key, **env}
        self.log_path = log_path
        self.extra_args = tuple(extra_args)
        self.app = app
        self.api_key = api_key
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the service is not running")
        return self._process.pid

    def command(self) -> list[str]:
        return local_command(self.port, self.extra_args, self.app)

    def start(self, timeout_s: float = 60.0) -> ServiceProcess:
        """Start the process and return once ``/readyz`` answers 200."""
        if self.running:
            raise RuntimeError(f"the service on port {self.port} is already running")
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command(), cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=self.url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise RuntimeError(
                        f"the service exited with {self._process.returncode} before it was "
                        f"ready:\n{self.log_tail()}"
                    )
                try:
                    if client.get("/readyz").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        self.stop(kill=True)
        raise RuntimeError(f"the service was not ready within {timeout_s} s:\n{self.log_tail()}")

    def stop(self, *, kill: bool = False, timeout_s: float = 15.0) -> int | None:
        """SIGTERM (SIGKILL with ``kill``), wait; return the exit code (None: not running)."""
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def client(self, timeout_s: float = 30.0) -> httpx.Client:
        """A client for this service that sends the API key."""
        return httpx.Client(
            base_url=self.url, timeout=timeout_s, headers={"X-API-Key": self.api_key}
        )

    def log_tail(self, n_chars: int = 4000) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-n_chars:]

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> ServiceProcess:
        """Start the service unless it already runs; stop it (SIGTERM) on exit."""
        return self if self.running else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def train_tiny_bundle(workdir: Path, *, epochs: int = 2, seed: int = 0) -> Path:
    """Write a synthetic dataset, train ``configs/synthetic.toml`` briefly; return models root."""
    from training.data.synthetic import write_synthetic

    data = write_synthetic(workdir / "data" / "tiny", n_users=300, n_items=200, seed=seed)
    models = workdir / "models"
    overrides = {
        "data.path": str(data),
        "stage1.max_epochs": str(epochs),
        "stage2.max_epochs": str(epochs),
        "run.models_dir": str(models),
        "run.runs_dir": str(workdir / "runs"),
        "run.device": '"cpu"',
        "run.progress": "false",
        "run.seed": str(seed),
    }
    command = [sys.executable, "-m", "training", "run", str(REPO_ROOT / "configs/synthetic.toml")]
    for key, value in overrides.items():
        command += ["--set", f"{key}={value}"]
    env = {**clean_environ(), "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    run_checked(command, env, TINY_TRAIN_TIMEOUT_S)
    roots = sorted(path.parent for path in models.rglob("LATEST"))
    if len(roots) != 1:
        raise RuntimeError(f"expected one exported models root under {models}, found {roots}")
    return roots[0]


def drop_redis_prefix(url: str, prefix: str) -> None:
    """Delete every key under ``prefix:`` in the Redis at ``url``."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
