"""Triton Python-backend model `fact_verifier`: (facts, sentence) -> P(sentence not supported by the facts).

Inputs `FACTS` BYTES [1] (`models.verifier.learned.facts_text(product)`) and `SENTENCE` BYTES [1] (one
sentence, e.g. from `split_sentences`), both non-empty UTF-8 of at most `max_text_bytes`; output
`P_UNSUPPORTED` FP32 [1], computed by `models.verifier.learned.SentenceVerifier` (the same code offline
users call, so probabilities are identical). The decision threshold is in `artifacts/verifier_config.json`
(callers read it with `SentenceVerifier.load(...).threshold`); the server returns probabilities only.

Where the classifier comes from: `<version>/artifacts/` (written by `models/verifier/train.py`). Without
artifacts, `tiny` mode serves base MiniLM with a seeded random head (tests/CI only: probabilities are
meaningless but shapes/dtypes are real); `real` mode loads (so the server stays ready for the other
models) and answers every request with a clear error.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from serving.triton_models import _common

log = logging.getLogger("descstream.fact_verifier")

DEFAULTS = {"max_text_bytes": "65536", "torch_threads": "0", "batch_size": "64", "tiny_seed": "0"}


def _tiny_verifier(device: str, seed: int) -> Any:
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    from models.embedding import minilm_dir
    from models.verifier.learned import SentenceVerifier

    torch.manual_seed(seed)
    model = BertForSequenceClassification.from_pretrained(str(minilm_dir()), num_labels=2).to(device).eval()
    return SentenceVerifier(model, AutoTokenizer.from_pretrained(str(minilm_dir())), 0.5, device=device,
                            config={"tiny": True})


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        from models.verifier.learned import CONFIG_FILE, SentenceVerifier

        params = {**DEFAULTS, **_common.parameters(args)}
        _common.set_threads(params)
        self.max_bytes = int(params["max_text_bytes"])
        self.batch_size = int(params["batch_size"])
        device = _common.device_for(args)
        folder = _common.version_dir(args) / "artifacts"
        self.verifier = None
        self.missing = ""
        if (folder / CONFIG_FILE).is_file():
            self.verifier = SentenceVerifier.load(folder, device=device)
            log.info("fact_verifier: loaded %s (threshold %.3f)", folder, self.verifier.threshold)
        elif _common.model_mode() == "tiny":
            self.verifier = _tiny_verifier(device, int(params["tiny_seed"]))
            log.warning("fact_verifier: no artifacts in %s; tiny mode serves a random head", folder)
        else:
            self.missing = f"fact_verifier has no trained artifacts in {folder} (python -m models.verifier.train)"
            log.error(self.missing)

    def _parse(self, request: Any) -> list[tuple[str, str]]:
        facts = _common.get_array(request, "FACTS", "bytes")
        sents = _common.get_array(request, "SENTENCE", "bytes")
        if facts.shape[0] != sents.shape[0]:
            raise _common.RequestError(f"FACTS has {facts.shape[0]} rows but SENTENCE has {sents.shape[0]}")
        return [
            (_common.as_text(_common.row_scalar(facts, i, "FACTS"), "FACTS", self.max_bytes),
             _common.as_text(_common.row_scalar(sents, i, "SENTENCE"), "SENTENCE", self.max_bytes))
            for i in range(facts.shape[0])
        ]

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        responses, good = _common.run_per_request(requests, self._parse)
        if self.verifier is None:
            for i, _ in good:
                responses[i] = _common.error_response(RuntimeError(self.missing), internal=True)
            return responses
        pairs = [p for _, ps in good for p in ps]
        try:
            probs = self.verifier.unsupported_probs(pairs, batch_size=self.batch_size) if pairs else []
        except Exception as exc:  # noqa: BLE001
            for i, _ in good:
                responses[i] = _common.error_response(RuntimeError(f"verification failed: {exc!r}"), internal=True)
            return responses
        arr = np.asarray(probs, dtype=np.float32).reshape(-1, 1)
        k = 0
        for i, ps in good:
            responses[i] = pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor("P_UNSUPPORTED", np.ascontiguousarray(arr[k : k + len(ps)]))]
            )
            k += len(ps)
        return responses

    def finalize(self) -> None:
        self.verifier = None
