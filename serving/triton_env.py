"""How to launch the `tritonserver` binary that `nvidia-pytriton` bundles, against a normal model repository.

PyPI's `tritonserver` is an empty placeholder; `nvidia-pytriton` 0.7.0 ships the real server 2.51.0 (the
same as NGC `nvcr.io/nvidia/tritonserver:24.10-py3`) with the Python backend. We use only its binary:

- a *backend directory* whose `python/` holds links to pytriton's `libtriton_python.so`,
  `triton_python_backend_utils.py` and the `triton_python_backend_stub` built for this interpreter's
  minor version. It is created once per (pytriton install, Python version) under a cache folder
  (`$DESCSTREAM_TRITON_BACKENDS`, default `~/.cache/descstream/triton-backends/`), atomically, so
  concurrent launchers never see a half-made directory;
- an environment with this interpreter's `bin` first on `PATH` (the stub finds the venv's site-packages
  through the `python` it finds there) and `LD_LIBRARY_PATH` starting with the interpreter's `LIBDIR`
  (otherwise the stub loads the system libpython and every model fails with
  `'_thread.RLock' object has no attribute '_recursion_count'`);
- explicit ports (port 0 is refused by tritonserver).

`triton_command(...)` returns `(argv, env)` for `subprocess.Popen(argv, env=env)`; it starts nothing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import sysconfig
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BACKENDS_ENV = "DESCSTREAM_TRITON_BACKENDS"
MODEL_MODE_ENV = "DESCSTREAM_MODEL_MODE"


class TritonNotInstalled(RuntimeError):
    """nvidia-pytriton (which bundles the tritonserver binary) is missing or incomplete."""


def pytriton_root() -> Path:
    """`<site-packages>/pytriton/tritonserver`, found without importing pytriton."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonNotInstalled("nvidia-pytriton is not installed (pip install nvidia-pytriton==0.7.0)")
    root = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
    if not (root / "bin" / "tritonserver").is_file():
        raise TritonNotInstalled(f"no tritonserver binary under {root}")
    return root


def tritonserver_binary() -> Path:
    return pytriton_root() / "bin" / "tritonserver"


def _backend_sources(root: Path) -> dict[str, Path]:
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    sources = {
        "libtriton_python.so": root / "backends" / "python" / "libtriton_python.so",
        "triton_python_backend_utils.py": root / "backends" / "python" / "triton_python_backend_utils.py",
        "triton_python_backend_stub": root / "python_backend_stubs" / ver / "triton_python_backend_stub",
    }
    missing = [str(p) for p in sources.values() if not p.exists()]
    if missing:
        raise TritonNotInstalled(f"pytriton install lacks {', '.join(missing)} (Python {ver} supported?)")
    return sources


def backend_directory(cache: str | Path | None = None) -> Path:
    """Create (once) and return a Triton backend directory whose `python/` links to pytriton's files."""
    root = pytriton_root()
    sources = _backend_sources(root)
    base = Path(cache or os.environ.get(BACKENDS_ENV) or Path.home() / ".cache" / "descstream" / "triton-backends")
    key = hashlib.blake2b(f"{root.resolve()}|{sys.version_info[:2]}".encode(), digest_size=6).hexdigest()
    bdir = base / f"py{sys.version_info.major}{sys.version_info.minor}-{key}"
    if _links_ok(bdir, sources):
        return bdir
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=bdir.name + ".tmp-", dir=base))
    (tmp / "python").mkdir()
    for name, src in sources.items():
        (tmp / "python" / name).symlink_to(src.resolve())
    try:
        os.replace(tmp, bdir)  # atomic; fails if another process already made a (non-empty) bdir
    except OSError:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        if not _links_ok(bdir, sources):  # stale/broken dir from an old install: rebuild it
            shutil.rmtree(bdir, ignore_errors=True)
            return backend_directory(cache)
    return bdir


def _links_ok(bdir: Path, sources: dict[str, Path]) -> bool:
    try:
        return all((bdir / "python" / n).resolve() == s.resolve() for n, s in sources.items())
    except OSError:
        return False


def triton_env(base: dict[str, str] | None = None, model_mode: str | None = None) -> dict[str, str]:
    """The environment tritonserver (and its Python stubs) need, on top of `base` (default os.environ)."""
    env = dict(os.environ if base is None else base)
    bindir = str(Path(sys.executable).parent)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != bindir]
    env["PATH"] = os.pathsep.join([bindir, *path])
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    ld = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p and p != libdir]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([libdir, *ld]) if libdir else os.pathsep.join(ld)
    # The model shims fall back to the repo root themselves; this makes `import descstream` work too
    # when the project is not installed into the venv.
    pp = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(REPO_ROOT)]
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *pp])
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.pop("PYTHONHOME", None)
    if model_mode is not None:
        env[MODEL_MODE_ENV] = model_mode
    return env


def triton_command(
    model_repository: str | Path,
    http_port: int,
    grpc_port: int,
    metrics_port: int,
    host: str = "127.0.0.1",
    *,
    model_mode: str | None = None,
    backend_cache: str | Path | None = None,
    extra_args: list[str] | None = None,
    base_env: dict[str, str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """argv and env to run the bundled tritonserver on `model_repository` with explicit ports.

    `model_mode` ("tiny"/"real"), if given, is put into the env as `DESCSTREAM_MODEL_MODE`; otherwise the
    caller's environment decides (unset = real). `extra_args` are appended (e.g. `--log-verbose=1`).
    """
    for name, port in (("http", http_port), ("grpc", grpc_port), ("metrics", metrics_port)):
        if not (0 < int(port) < 65536):
            raise ValueError(f"{name} port must be 1-65535 (tritonserver refuses port 0), got {port}")
    root = pytriton_root()
    argv = [
        str(root / "bin" / "tritonserver"),
        f"--model-repository={Path(model_repository).resolve()}",
        f"--backend-directory={backend_directory(backend_cache)}",
        f"--cache-directory={root / 'caches'}",
        f"--http-address={host}",
        f"--http-port={int(http_port)}",
        f"--grpc-address={host}",
        f"--grpc-port={int(grpc_port)}",
        f"--metrics-address={host}",
        f"--metrics-port={int(metrics_port)}",
        "--allow-gpu-metrics=false",
        "--exit-timeout-secs=5",
        *(extra_args or []),
    ]
    return argv, triton_env(base_env, model_mode)


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """`n` distinct currently-free TCP ports (bound then released; racy but fine for tests)."""
    import socket

    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports
