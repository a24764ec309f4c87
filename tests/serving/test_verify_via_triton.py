"""`descstream verify --learned triton`: the command scores sentences with the served `fact_verifier`
(the session stack's Triton, tiny mode) and still applies every span rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from descstream.config import Settings

pytestmark = pytest.mark.slow

PRODUCT = {"product_id": "vt-1", "version": 1, "updated_at": "2026-01-01T00:00:00Z", "title": "Zenflow Yoga Mat",
           "brand": "Zenflow", "category": "Sports > Yoga > Mats", "price": 1299.0, "currency": "INR",
           "attributes": {"length": "183 cm", "material": "TPE", "colour": "purple"}}


def test_verify_command_through_triton(stack: Settings, tmp_path: Path):
    products = tmp_path / "products.jsonl"
    products.write_text(json.dumps(PRODUCT) + "\n")
    texts = tmp_path / "texts.jsonl"
    texts.write_text(json.dumps({"product_id": "vt-1", "text": "The Zenflow Yoga Mat weighs 183 kg and costs $1299."}) + "\n"
                     + json.dumps({"product_id": "vt-1", "text": "The Zenflow Yoga Mat is 183 cm long, made of TPE."}) + "\n")
    out = tmp_path / "verdicts.jsonl"
    env = {**os.environ, "DESCSTREAM_TRITON__GRPC_URL": stack.triton.grpc_url,
           "DESCSTREAM_TRITON__HTTP_URL": stack.triton.http_url}
    proc = subprocess.run([sys.executable, "-m", "descstream.cli", "verify", "--products", str(products), "--texts",
                           str(texts), "--output", str(out), "--learned", "triton"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "learned verifier triton" in proc.stderr
    verdicts = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(verdicts) == 2
    spans = {e["span"] for e in verdicts[0]["errors"]}
    assert {"183 kg", "$1299"} <= spans, verdicts[0]
