"""Triton Python-backend model `text_embedder`: all-MiniLM-L6-v2 sentence embeddings.

Input `TEXT` BYTES [1] (UTF-8, non-empty, at most `max_text_bytes`); output `EMBEDDING` FP32 [384],
mean-pooled over real tokens and L2-normalised, computed by `models.embedding.Embedder` (the same code
offline users call, so vectors are identical). Texts longer than 256 word pieces are truncated (the
model's training length). The real MiniLM is small, so `tiny` mode serves it too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from serving.triton_models import _common

DEFAULTS = {"max_text_bytes": "65536", "torch_threads": "0", "batch_size": "64"}


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        from models.embedding import Embedder

        params = {**DEFAULTS, **_common.parameters(args)}
        _common.set_threads(params)
        self.max_bytes = int(params["max_text_bytes"])
        self.batch_size = int(params["batch_size"])
        self.embedder = Embedder(device=_common.device_for(args))

    def _parse(self, request: Any) -> list[str]:
        arr = _common.get_array(request, "TEXT", "bytes")
        return [_common.as_text(_common.row_scalar(arr, i, "TEXT"), "TEXT", self.max_bytes) for i in range(arr.shape[0])]

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        responses, good = _common.run_per_request(requests, self._parse)
        texts = [t for _, ts in good for t in ts]
        try:
            vecs = self.embedder.embed(texts, batch_size=self.batch_size) if texts else np.zeros((0, 384), np.float32)
        except Exception as exc:  # noqa: BLE001
            for i, _ in good:
                responses[i] = _common.error_response(RuntimeError(f"embedding failed: {exc!r}"), internal=True)
            return responses
        k = 0
        for i, ts in good:
            responses[i] = pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor("EMBEDDING", np.ascontiguousarray(vecs[k : k + len(ts)], dtype=np.float32))]
            )
            k += len(ts)
        return responses

    def finalize(self) -> None:
        self.embedder = None
