"""`fact_verifier` through the real tritonserver of the session `stack` fixture: same probabilities as the
in-process `SentenceVerifier`, batched requests, per-request errors, and `TritonClient.verify_sentences`."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import numpy as np
import pytest
import tritonclient.grpc.aio as grpcclient

from descstream.config import Settings
from descstream.schemas import ProductUpsert
from models.verifier.learned import SentenceVerifier, default_artifacts_dir, facts_text, split_sentences
from serving.client import TritonClient, TritonRequestError

pytestmark = pytest.mark.slow


def _product(**kw) -> ProductUpsert:
    data = dict(
        product_id="fv-1", version=1, updated_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
        title="Zenflow Yoga Mat", category="Sports > Fitness > Yoga Mats", brand="Zenflow", price=1299.0,
        currency="INR", attributes={"length": "183 cm", "thickness": "6 mm", "material": "TPE", "colour": "purple"},
        description="Cash on delivery available.",
    )
    data.update(kw)
    return ProductUpsert(**data)


TEXT = ("The Zenflow Yoga Mat is 183 cm long and 6 mm thick. It is made of TPE and comes in purple. "
        "It costs 1299 INR. It weighs 183 kg. It comes with a 4000 mAh battery and a lifetime warranty.")


@pytest.fixture(scope="module")
def verifier() -> SentenceVerifier:
    return SentenceVerifier.load(default_artifacts_dir())


@pytest.fixture
async def client(stack: Settings):
    c = TritonClient.from_settings(stack)
    yield c
    await c.close()


def _pairs() -> list[tuple[str, str]]:
    mat = _product()
    shirt = _product(title="Roadster Men Black Cotton T-shirt", brand="Roadster", category="Apparel > Topwear > Tshirts",
                     price=599.0, attributes={"colour": "Black", "fabric": "Cotton"})
    pairs = [(facts_text(mat), s) for s in split_sentences(TEXT)]
    pairs += [(facts_text(shirt), "This T-shirt is made of cotton."), (facts_text(shirt), "It has a 4000 mAh battery.")]
    return pairs


def _inputs(pairs: list[tuple[str, str]]) -> list:
    out = []
    for name, col in (("FACTS", [f for f, _ in pairs]), ("SENTENCE", [s for _, s in pairs])):
        arr = np.array([[v.encode()] for v in col], dtype=np.object_)
        i = grpcclient.InferInput(name, list(arr.shape), "BYTES")
        i.set_data_from_numpy(arr)
        out.append(i)
    return out


async def test_ready_with_the_other_models(client: TritonClient) -> None:
    assert await client.ready(["desc_generator", "text_embedder", "product_tagger", "fact_verifier"])


async def test_batch_matches_in_process_verifier(stack: Settings, verifier: SentenceVerifier) -> None:
    pairs = _pairs()
    expected = np.array(verifier.unsupported_probs(pairs), dtype=np.float32)
    raw = grpcclient.InferenceServerClient(stack.triton.grpc_url)
    try:
        res = await raw.infer("fact_verifier", _inputs(pairs), outputs=[grpcclient.InferRequestedOutput("P_UNSUPPORTED")])
        got = res.as_numpy("P_UNSUPPORTED")
        assert got.dtype == np.float32 and got.shape == (len(pairs), 1)
        np.testing.assert_allclose(got.reshape(-1), expected, atol=1e-4)
        # one pair per request, all concurrent: the dynamic batcher mixes them; answers stay per request
        singles = await asyncio.gather(*(raw.infer("fact_verifier", _inputs([p])) for p in pairs))
        np.testing.assert_allclose([r.as_numpy("P_UNSUPPORTED")[0, 0] for r in singles], expected, atol=1e-4)
        # rows of unequal length are a request error
        bad = _inputs(pairs[:2])[:1] + _inputs(pairs[:3])[1:]
        with pytest.raises(Exception) as info:
            await raw.infer("fact_verifier", bad)
        assert "INVALID_ARG" in str(info.value.status())
    finally:
        await raw.close()


async def test_client_verify_sentences(client: TritonClient, verifier: SentenceVerifier) -> None:
    pairs = _pairs() * 12  # more than one 64-row chunk
    got = await client.verify_sentences(pairs)
    assert len(got) == len(pairs) and all(isinstance(p, float) for p in got)
    np.testing.assert_allclose(got, verifier.unsupported_probs(pairs), atol=1e-4)
    assert await client.verify_sentences([]) == []
    with pytest.raises(ValueError):
        await client.verify_sentences([("title: x", "")])
    # the trained model: faithful sentences of the mat below its threshold, the invented battery above
    flags = [p >= verifier.threshold for p in got[: len(split_sentences(TEXT))]]
    assert flags[0] is False and flags[-1] is True, list(zip(split_sentences(TEXT), got))


async def test_empty_sentence_is_a_request_error(client: TritonClient) -> None:
    with pytest.raises(TritonRequestError):
        await client._infer("fact_verifier", _inputs([("title: x", "")]), ["P_UNSUPPORTED"])
