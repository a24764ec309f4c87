"""Generation agent: generation requests -> generator (Triton) -> faithfulness gate -> Redis + `descriptions`.

Requests (key = product id, so one product always lands on the same partition and worker) are JSON:
``{"product_id", "version", "audiences": [...], "reason": "product_change"|"audience_switch", "priority"}``.
The agent always writes for the product's *current* facts (Redis product meta), so a backlog of old
versions collapses into one job per (product, audience).

Per micro-batch (`stream.take_events(batch_size, within=batch_timeout_s)`):
1. coalesce duplicate jobs (same product + audience; the product's current version and the model
   version make them identical work),
2. skip what Redis already holds (a record for the current facts version, from the current model, or a
   gate-failure fallback from it), deleted products and audiences irrelevant for the category,
3. order by priority (fresh product changes first, then hot/recent products of switched users),
4. call the generator in chunks of `batch_size`; failures are retried with exponential backoff
   (`triton.max_retries`, `triton.backoff_s`); a persistent failure publishes the faithful fallback with
   the reason recorded in `gate.reasons` and model_version "none" (so a later request retries it),
5. gate every text; a failed text is replaced by `fallback_text` (reasons recorded, counted),
6. CAS-write to Redis (Lua) and publish the written records to `descriptions`, awaiting the broker ack.

Offsets: Faust acknowledges the events of a `take_events` batch only when the agent asks for the next
batch (the `finally` after `yield` in `Stream.take_events`). Everything above is awaited inside the loop
body, so by the time the next `take` returns, the Redis pipeline has returned (acknowledged) and the
`descriptions` sends are acked; a crash before that replays the batch, and replays are absorbed by
the skip step and the CAS. Nothing is dropped silently: each job ends in exactly one counted outcome.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import faust
import orjson

from descstream.config import Settings
from descstream.schemas import DescriptionRecord, GateVerdict, ProductUpsert, encode

from . import metrics
from .services import Services, circuit_open_error, is_result, make_request
from .validation import dead_letter, event_coords

log = logging.getLogger(__name__)

NO_MODEL = "none"


@dataclass
class Job:
    product_id: str
    audience: str
    priority: float
    reason: str
    product: ProductUpsert | None = None
    version: int = 0


def coalesce(requests: list[dict]) -> dict[tuple[str, str], Job]:
    jobs: dict[tuple[str, str], Job] = {}
    for req in requests:
        pid = req["product_id"]
        for aud in req.get("audiences") or ():
            key = (pid, aud)
            prio = float(req.get("priority", 0.0))
            job = jobs.get(key)
            if job is None:
                jobs[key] = Job(pid, aud, prio, str(req.get("reason", "")))
            else:
                metrics.GEN_REQUESTS.labels(outcome="coalesced").inc()
                if prio > job.priority:
                    job.priority, job.reason = prio, str(req.get("reason", ""))
    return jobs


class GenerationWorker:
    """The batch logic, separate from Faust so it can be unit-tested and benchmarked."""

    def __init__(self, settings: Settings, services: Services):
        self.settings = settings
        self.services = services
        self.model_version: str | None = getattr(services.generator, "model_version", None)
        self.circuit_open = circuit_open_error()

    async def plan(self, jobs: dict[tuple[str, str], Job]) -> list[Job]:
        """Resolve current facts, drop what needs no work, order by priority."""
        store = self.services.store
        pids = sorted({pid for pid, _ in jobs})
        metas = dict(zip(pids, await store.get_meta_many(pids)))
        todo: list[Job] = []
        for (pid, aud), job in jobs.items():
            meta = metas.get(pid)
            if meta is None or meta.facts is None:
                outcome = "deleted" if (meta is not None and meta.deleted) else "unknown_product"
                metrics.GEN_REQUESTS.labels(outcome=outcome).inc()
                continue
            if meta.deleted:
                metrics.GEN_REQUESTS.labels(outcome="deleted").inc()
                continue
            gate = self.services.gate
            try:
                audience = gate.audience(aud)
            except KeyError:
                metrics.GEN_REQUESTS.labels(outcome="unknown_audience").inc()
                continue
            if not audience.matches(meta.category):
                metrics.GEN_REQUESTS.labels(outcome="irrelevant").inc()
                continue
            product = meta.facts
            if meta.category and not product.category:
                product = product.model_copy(update={"category": meta.category})
            job.product = product
            job.version = meta.version
            todo.append((job, meta.facts_version))  # type: ignore[arg-type]
        stored = await store.stored_versions([(j.product_id, j.audience) for j, _ in todo])  # type: ignore[misc]
        out: list[Job] = []
        for (job, fv), st in zip(todo, stored):  # type: ignore[misc]
            if st is not None:
                pv, mv, _src = st
                if pv >= fv and mv != NO_MODEL and (self.model_version is None or mv == self.model_version):
                    metrics.GEN_REQUESTS.labels(outcome="already_current").inc()
                    continue
            out.append(job)
        out.sort(key=lambda j: j.priority, reverse=True)
        return out

    async def _generate(self, jobs: list[Job]) -> list[Any]:
        reqs = [make_request(j.product, j.audience, self.settings) for j in jobs]  # type: ignore[arg-type]
        t0 = time.perf_counter()
        try:
            res = await self.services.generator.generate(reqs)
        except self.circuit_open as exc:
            metrics.GEN_FAILURES.labels(kind="circuit_open").inc()
            res = [exc] * len(jobs)
        except Exception as exc:
            metrics.GEN_FAILURES.labels(kind=type(exc).__name__).inc()
            res = [exc] * len(jobs)
        finally:
            metrics.TRITON_LATENCY.labels(call="generate").observe(time.perf_counter() - t0)
        metrics.GENERATED.inc(len(jobs))
        return list(res)

    async def generate_with_retries(self, jobs: list[Job]) -> list[Any]:
        results: list[Any] = [None] * len(jobs)
        pending = list(range(len(jobs)))
        t = self.settings.triton
        for attempt in range(t.max_retries + 1):
            if attempt:
                await asyncio.sleep(t.backoff_s * (2 ** (attempt - 1)))
                metrics.GEN_FAILURES.labels(kind="retry").inc(len(pending))
            res = await self._generate([jobs[i] for i in pending])
            still = []
            for i, r in zip(pending, res):
                results[i] = r
                if not is_result(r) and getattr(r, "retryable", True):
                    still.append(i)
            pending = still
            if not pending:
                break
        return results

    def _fallback(self, product: ProductUpsert, audience: str) -> str:
        try:
            return self.services.gate.fallback_text(product, audience)
        except Exception as exc:  # never leave a job without an outcome
            log.warning("fallback_text failed for %s/%s: %s", product.product_id, audience, exc)
            return product.description or product.title

    def build_records(self, jobs: list[Job], results: list[Any]) -> list[DescriptionRecord]:
        gate = self.services.gate
        now = datetime.now(timezone.utc)
        records = []
        for job, r in zip(jobs, results):
            product = job.product
            assert product is not None
            aud = job.audience
            if is_result(r):
                mv = getattr(r, "model_version", None) or "unknown"
                self.model_version = mv
                try:
                    verdict = gate.check(product, aud, r.text)
                except Exception as exc:
                    verdict = GateVerdict(passed=False, reasons=(f"gate_error:{type(exc).__name__}",))
                if verdict.passed:
                    metrics.GATE.labels(verdict="pass", reason="").inc()
                    text, source = r.text, "generated"
                else:
                    for reason in verdict.reasons or ("unspecified",):
                        metrics.GATE.labels(verdict="fail", reason=str(reason).split(":")[0][:40]).inc()
                    metrics.GEN_REQUESTS.labels(outcome="gate_failed").inc()
                    text, source = self._fallback(product, aud), "fallback"
                    verdict = GateVerdict(
                        passed=True, reasons=tuple(f"fallback: gate failed: {x}" for x in verdict.reasons) or ("fallback: gate failed",)
                    )
            else:
                mv = NO_MODEL
                reason = getattr(r, "message", None) or repr(r)
                text, source = self._fallback(product, aud), "fallback"
                verdict = GateVerdict(passed=True, reasons=(f"fallback: generation failed: {str(reason)[:200]}",))
                metrics.GEN_REQUESTS.labels(outcome="generation_failed").inc()
            records.append(
                DescriptionRecord(
                    product_id=job.product_id,
                    audience=aud,
                    text=text,
                    source=source,
                    model_version=mv,
                    product_version=job.version,
                    source_event_time=product.updated_at,
                    generated_at=now,
                    gate=verdict,
                )
            )
        return records

    async def process(self, requests: list[dict]) -> list[DescriptionRecord]:
        """Coalesce, plan, generate, gate and CAS-write; returns the records Redis accepted."""
        jobs = await self.plan(coalesce(requests))
        written: list[DescriptionRecord] = []
        bs = self.settings.worker.batch_size
        for i in range(0, len(jobs), bs):
            chunk = jobs[i : i + bs]
            results = await self.generate_with_retries(chunk)
            records = self.build_records(chunk, results)
            codes = await self.services.store.publish_codes(records)
            for rec, code in zip(records, codes):
                result = {1: "written", 0: "not_newer", -1: "deleted", -2: "stale"}.get(code, "other")
                metrics.REDIS_WRITES.labels(result=result).inc()
                metrics.GEN_REQUESTS.labels(outcome=f"redis_{result}").inc()
                if code == 1:
                    metrics.PUBLISHED.labels(source=rec.source).inc()
                    written.append(rec)
        return written


def register(app: faust.App, settings: Settings, services: Services) -> None:
    worker = GenerationWorker(settings, services)
    app.generation_worker = worker  # type: ignore[attr-defined]
    events_in = metrics.EVENTS_IN.labels(topic=settings.topics.generation_requests)

    @app.agent(app.gen_topic, name="descstream-generation")  # type: ignore[attr-defined]
    async def generation(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.worker.batch_size, within=settings.worker.batch_timeout_s):
            metrics.BATCH_SIZE.labels(agent="generation").observe(len(events))
            requests = []
            for event in events:
                events_in.inc()
                try:
                    req = orjson.loads(event.value)
                    if not isinstance(req, dict) or not isinstance(req.get("product_id"), str):
                        raise ValueError("generation request must be an object with a product_id")
                    requests.append(req)
                except Exception as exc:
                    topic, part, off, key = event_coords(event)
                    dl = dead_letter(topic=topic, partition=part, offset=off, key=key, value=event.value, reason=f"bad generation request: {exc}")
                    await app.dlq_topic.send(key=key, value=encode(dl))  # type: ignore[attr-defined]
            written = await worker.process(requests)
            futs = [
                await app.desc_topic.send(key=rec.product_id.encode(), value=encode(rec))  # type: ignore[attr-defined]
                for rec in written
            ]
            for fut in futs:
                await fut
