"""Helpers shared by the Triton Python-backend models (run inside the Triton stub, Python 3.10-3.12).

Nothing here imports `triton_python_backend_utils` at import time, so the model modules can be imported
(and their pure-Python parts unit-tested or benchmarked in-process) outside Triton.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_MODE_ENV = "DESCSTREAM_MODEL_MODE"

if str(REPO_ROOT) not in sys.path:  # `models`, `descstream` importable even if not installed
    sys.path.append(str(REPO_ROOT))


class RequestError(ValueError):
    """A problem with one request (bad input): becomes that request's INVALID_ARG error only."""


def model_mode() -> str:
    """`tiny` or `real` (default), from `DESCSTREAM_MODEL_MODE` in tritonserver's environment."""
    mode = os.environ.get(MODEL_MODE_ENV, "real").strip().lower() or "real"
    if mode not in ("tiny", "real"):
        raise ValueError(f"{MODEL_MODE_ENV} must be 'tiny' or 'real', got {mode!r}")
    return mode


def parameters(args: dict[str, Any]) -> dict[str, str]:
    """The `parameters { key: ... value: { string_value: ... } }` of config.pbtxt as a plain dict."""
    cfg = json.loads(args["model_config"])
    return {k: v.get("string_value", "") for k, v in (cfg.get("parameters") or {}).items()}


def model_config(args: dict[str, Any]) -> dict[str, Any]:
    return json.loads(args["model_config"])


def version_dir(args: dict[str, Any]) -> Path:
    """This instance's version folder: `<model_repository>/<model>/<version>` (Triton passes the model dir)."""
    return Path(args["model_repository"]) / str(args["model_version"])


def device_for(args: dict[str, Any]) -> str:
    """`cuda:<id>` for GPU instances (production), `cpu` otherwise."""
    kind = str(args.get("model_instance_kind", "CPU")).upper()
    if kind == "GPU":
        return f"cuda:{int(args.get('model_instance_device_id', 0) or 0)}"
    return "cpu"


def set_threads(params: dict[str, str]) -> None:
    """`torch_threads` parameter (0/absent = torch's default)."""
    n = int(params.get("torch_threads", "0") or 0)
    if n > 0:
        import torch

        torch.set_num_threads(n)


def read_card(vdir: Path) -> dict[str, Any]:
    path = vdir / "model_card.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}
    return {}


# ---- per-request input decoding -------------------------------------------------------------------

def _pb():
    import triton_python_backend_utils as pb_utils  # only inside the Triton process

    return pb_utils


def get_array(request: Any, name: str, kind: str) -> np.ndarray:
    """An input as a numpy array with at least one row; `kind` is 'bytes', 'int' or 'float'."""
    tensor = _pb().get_input_tensor_by_name(request, name)
    if tensor is None:
        raise RequestError(f"missing input {name}")
    arr = tensor.as_numpy()
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise RequestError(f"input {name} is empty")
    if kind == "bytes" and arr.dtype != np.object_:
        raise RequestError(f"input {name} must be BYTES, got {arr.dtype}")
    if kind == "int" and not np.issubdtype(arr.dtype, np.integer):
        raise RequestError(f"input {name} must be an integer tensor, got {arr.dtype}")
    if kind == "float" and not np.issubdtype(arr.dtype, np.floating):
        raise RequestError(f"input {name} must be a float tensor, got {arr.dtype}")
    return arr.reshape(arr.shape[0], -1)


def row_scalar(arr: np.ndarray, i: int, name: str) -> Any:
    row = arr[i]
    if row.size != 1:
        raise RequestError(f"input {name} must have shape [1] per row, got {list(row.shape)}")
    return row.reshape(-1)[0]


def as_text(value: Any, name: str, max_bytes: int) -> str:
    raw = value if isinstance(value, (bytes, bytearray)) else str(value).encode()
    if len(raw) == 0:
        raise RequestError(f"input {name} is empty")
    if len(raw) > max_bytes:
        raise RequestError(f"input {name} has {len(raw)} bytes, more than {max_bytes}")
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError(f"input {name} is not valid UTF-8") from None


def error_response(exc: BaseException, internal: bool = False) -> Any:
    pb_utils = _pb()
    msg = str(exc) or exc.__class__.__name__
    try:
        code = pb_utils.TritonError.INTERNAL if internal else pb_utils.TritonError.INVALID_ARG
        err = pb_utils.TritonError(msg, code)
    except (AttributeError, TypeError):  # older backends: message only
        err = pb_utils.TritonError(msg)
    return pb_utils.InferenceResponse(output_tensors=[], error=err)


def bytes_tensor(name: str, values: list[str]) -> Any:
    arr = np.array([v.encode("utf-8") for v in values], dtype=np.object_).reshape(len(values), 1)
    return _pb().Tensor(name, arr)


def run_per_request(requests: list[Any], parse: Callable[[Any], Any]) -> tuple[list[Any], list[tuple[int, Any]]]:
    """Parse every request; returns (responses with errors filled in, [(index, parsed)] of the good ones)."""
    responses: list[Any] = [None] * len(requests)
    good: list[tuple[int, Any]] = []
    for i, req in enumerate(requests):
        try:
            good.append((i, parse(req)))
        except RequestError as exc:
            responses[i] = error_response(exc)
        except Exception as exc:  # noqa: BLE001 - one bad request must not fail its batch-mates
            responses[i] = error_response(RequestError(f"invalid request: {exc!r}"))
    return responses, good
