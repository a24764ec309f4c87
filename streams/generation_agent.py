"""Generation agent: generation requests -> generator (Triton) -> faithfulness gate -> Redis + `descriptions`.

Requests (key = product id, so one product always lands on the same partition and worker) are JSON:
``{"product_id", "version", "audiences": [...], "reason": "product_change"|"audience_switch"|"replay"|
"backfill"|"retry", "priority", "attempt": 0, "not_before_ms": 0, "source_ms", "model_version"}``
(``attempt``/``not_before_ms`` only on retries, ``source_ms`` = the triggering event's time when known,
``model_version`` only on model-upgrade requests). The agent always writes for the product's *current*
facts (Redis product meta), so a backlog of old versions collapses into one job per (product, audience).

Model-upgrade requests (``descstream backfill --model-version V`` sends ``reason: "backfill"``,
``model_version: V``; their retries keep ``model_version``) are skipped only when the stored description
for the current facts was produced by V (not merely "current for this product version"), or when this
worker's generator is known to be another model than V (it cannot produce V). Their records are written
in the CAS's *upgrade mode* (see `streams.redis_store`) when the text came from V, so V's text replaces an
older model's text at the same (product version, source event time); a fallback never replaces a
gate-passed generated text, and the other rules (never older, stale or deleted) still hold.

Per micro-batch (`stream.take_events(batch_size, within=batch_timeout_s)`):
1. split off *parked* retries (``not_before_ms`` in the future); if nothing else is due, wait (at most
   `WorkerSettings.generation_park_max_s`) for the earliest one; parked requests still not due are re-sent unchanged,
2. coalesce duplicate jobs (same product + audience; the product's current version and the model
   version make them identical work; the lowest attempt count wins),
3. skip what Redis already holds (a record for the current facts version, from the current model, or a
   gate-rejection fallback from it), deleted products and audiences irrelevant for the category,
4. order by priority (fresh product changes first, then hot/recent products of switched users),
5. call the generator in chunks of `batch_size` (the Triton client retries transport errors itself),
6. gate every text; a rejected text is replaced by `fallback_text` (reasons recorded, counted). That
   fallback is *final* for this product version + model version (it carries the model version, so step 3
   skips it): a deterministic model would write the same text again,
7. a *generation failure* (Triton down, breaker open, timeout) publishes the faithful fallback at once
   (model_version "none", reason recorded) so shoppers never see nothing, and schedules a retry: the
   request is re-enqueued on this topic with ``attempt + 1`` and ``not_before_ms`` = now + backoff
   (`generation_retry_base_s * 2**attempt`, capped at `generation_retry_max_s`, never before an open
   breaker's reset; all `WorkerSettings`). When a retry succeeds, the generated text replaces the
   fallback (the CAS ranks generated 2 > gate-rejected fallback 1 > generation-failed fallback 0 at the
   same stamp, so even a retry whose text the gate rejects replaces the "none" fallback). After
   `generation_max_attempts` attempts the fallback stays, counted as `gave_up`, until the
   next request for that product (a product change or an audience switch). A non-retryable error
   (the request itself is bad) is not retried,
8. CAS-write to Redis (Lua), publish the written records to `descriptions` and the retries to this topic,
   awaiting the broker acks.

Errors: Redis outages are retried inside `RedisStore` (the batch waits); generator errors become fallbacks
+ retries (above); any other exception exits the worker without acknowledging the batch
(`streams/fatal.py`), so it is redelivered on restart.

Offsets: Faust acknowledges the events of a `take_events` batch only when the agent asks for the next
batch (the `finally` after `yield` in `Stream.take_events`). Everything above is awaited inside the loop
body, so by the time the next `take` returns, the Redis pipeline has returned (acknowledged) and the
`descriptions` and retry sends are acked; a crash before that replays the batch, and replays are absorbed by
the skip step and the CAS. Nothing is dropped silently: each job ends in exactly one counted outcome.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

import faust
import orjson

from descstream.config import Settings
from descstream.schemas import DescriptionRecord, GateVerdict, ProductUpsert, encode

from . import metrics
from .fatal import crash_worker
from .services import CircuitOpenError, Services, is_result, make_request
from .validation import dead_letter, event_coords, send_dead_letter

log = logging.getLogger(__name__)

NO_MODEL = "none"
# Retry budget/backoff and parking: WorkerSettings.generation_max_attempts, generation_retry_base_s,
# generation_retry_max_s, generation_park_max_s (overridable per GenerationWorker for tests).

Enqueue = Callable[[list[dict]], Awaitable[None]]


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Job:
    product_id: str
    audience: str
    priority: float
    reason: str
    attempt: int = 0
    product: ProductUpsert | None = None
    version: int = 0
    target_model: str | None = None  # model-upgrade request: the model version that should replace the text


def coalesce(requests: list[dict]) -> dict[tuple[str, str], Job]:
    jobs: dict[tuple[str, str], Job] = {}
    for req in requests:
        pid = req["product_id"]
        prio = float(req.get("priority", 0.0))
        attempt = int(req.get("attempt", 0) or 0)
        target = req.get("model_version")
        target = target if isinstance(target, str) and target and target != NO_MODEL else None
        for aud in req.get("audiences") or ():
            key = (pid, aud)
            job = jobs.get(key)
            if job is None:
                jobs[key] = Job(pid, aud, prio, str(req.get("reason", "")), attempt, target_model=target)
            else:
                metrics.GEN_REQUESTS.labels(outcome="coalesced").inc()
                if prio > job.priority:
                    job.priority, job.reason = prio, str(req.get("reason", ""))
                job.attempt = min(job.attempt, attempt)  # fresh news resets the retry budget
                if target is not None:  # an upgrade request merged with others keeps its upgrade
                    job.target_model = target
    return jobs


def split_due(requests: list[dict], at_ms: int) -> tuple[list[dict], list[dict]]:
    due, parked = [], []
    for r in requests:
        (parked if (r.get("not_before_ms") or 0) > at_ms else due).append(r)
    return due, parked


class GenerationWorker:
    """The batch logic, separate from Faust so it can be unit-tested and benchmarked.

    `enqueue(requests)` sends generation requests back to the generation-requests topic (retries and
    parked requests) and returns once the broker acknowledged them; without one they collect in `outbox`.
    """

    def __init__(
        self,
        settings: Settings,
        services: Services,
        enqueue: Enqueue | None = None,
        *,
        max_attempts: int | None = None,
        retry_base_s: float | None = None,
        retry_max_s: float | None = None,
        park_max_s: float | None = None,
    ):
        w = settings.worker
        self.settings = settings
        self.services = services
        self.model_version: str | None = getattr(services.generator, "model_version", None)
        self.outbox: list[dict] = []
        self.enqueue: Enqueue = enqueue or self._to_outbox
        self.max_attempts = max(1, w.generation_max_attempts if max_attempts is None else max_attempts)
        self.retry_base_s = w.generation_retry_base_s if retry_base_s is None else retry_base_s
        self.retry_max_s = w.generation_retry_max_s if retry_max_s is None else retry_max_s
        self.park_max_s = w.generation_park_max_s if park_max_s is None else park_max_s

    async def _to_outbox(self, requests: list[dict]) -> None:
        self.outbox.extend(requests)

    def retry_delay_s(self, attempt: int, retry_after_s: float = 0.0) -> float:
        """Backoff before attempt `attempt + 1` (attempt counts from 0)."""
        return max(retry_after_s, min(self.retry_max_s, self.retry_base_s * (2**attempt)))

    async def plan(self, jobs: dict[tuple[str, str], Job]) -> list[Job]:
        """Resolve current facts, drop what needs no work, order by priority."""
        store = self.services.store
        pids = sorted({pid for pid, _ in jobs})
        metas = dict(zip(pids, await store.get_meta_many(pids)))
        gate = self.services.gate
        todo: list[tuple[Job, int]] = []
        for (pid, aud), job in jobs.items():
            meta = metas.get(pid)
            if meta is None or meta.facts is None or meta.deleted:
                outcome = "deleted" if (meta is not None and meta.deleted) else "unknown_product"
                metrics.GEN_REQUESTS.labels(outcome=outcome).inc()
                continue
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
            todo.append((job, meta.facts_version))
        stored = await store.stored_versions([(j.product_id, j.audience) for j, _ in todo])
        out: list[Job] = []
        for (job, fv), st in zip(todo, stored):
            if st is not None:
                pv, mv, _src = st
                fresh = pv >= fv and mv != NO_MODEL  # a real model's text (or its gate fallback) for these facts
                target = job.target_model
                if target is not None:
                    if fresh and mv == target:  # produced by the requested model: nothing to upgrade
                        metrics.GEN_REQUESTS.labels(outcome="already_current").inc()
                        continue
                    if fresh and self.model_version is not None and self.model_version != target:
                        # this worker's generator is another model: its text could not replace the stored one
                        metrics.GEN_REQUESTS.labels(outcome="upgrade_model_mismatch").inc()
                        continue
                elif fresh and (self.model_version is None or mv == self.model_version):
                    metrics.GEN_REQUESTS.labels(outcome="already_current").inc()
                    continue
            out.append(job)
        out.sort(key=lambda j: j.priority, reverse=True)
        return out

    async def _generate(self, jobs: list[Job]) -> list[Any]:
        """One generator call; a whole-call failure becomes that exception for every job."""
        reqs = [make_request(j.product, j.audience, self.settings) for j in jobs]  # type: ignore[arg-type]
        t0 = time.perf_counter()
        try:
            res = list(await self.services.generator.generate(reqs))
            if len(res) != len(jobs):
                raise RuntimeError(f"generator returned {len(res)} results for {len(jobs)} requests")
        except CircuitOpenError as exc:
            metrics.GEN_FAILURES.labels(kind="circuit_open").inc()
            res = [exc] * len(jobs)
        except Exception as exc:
            metrics.GEN_FAILURES.labels(kind=type(exc).__name__).inc()
            res = [exc] * len(jobs)
        finally:
            metrics.TRITON_LATENCY.labels(call="generate").observe(time.perf_counter() - t0)
        metrics.GENERATED.inc(len(jobs))
        return res

    def _fallback(self, product: ProductUpsert, audience: str) -> str:
        try:
            return self.services.gate.fallback_text(product, audience)
        except Exception as exc:  # never leave a job without an outcome
            log.warning("fallback_text failed for %s/%s: %s", product.product_id, audience, exc)
            return product.description or product.title

    def build_records(self, jobs: list[Job], results: list[Any]) -> tuple[list[DescriptionRecord], list[dict]]:
        """Gate results into records; returns (records, retry requests for failed generations)."""
        gate = self.services.gate
        now = datetime.now(timezone.utc)
        at_ms = now_ms()
        records = []
        retries: list[dict] = []
        for job, r in zip(jobs, results):
            product = job.product
            assert product is not None
            aud = job.audience
            if is_result(r):
                mv = r.model_version or "unknown"
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
                message = str(getattr(r, "message", None) or r or repr(r))[:200]
                retryable = bool(getattr(r, "retryable", True))
                attempt = job.attempt + 1  # attempts made so far
                if not retryable:
                    note = "not retryable"
                    metrics.GEN_REQUESTS.labels(outcome="generation_failed_permanent").inc()
                elif attempt >= self.max_attempts:
                    note = f"gave up after {attempt} attempts"
                    metrics.GEN_REQUESTS.labels(outcome="gave_up").inc()
                else:
                    delay = self.retry_delay_s(job.attempt, float(getattr(r, "retry_after_s", 0.0) or 0.0))
                    note = f"attempt {attempt}/{self.max_attempts}, retry in {delay:.1f}s"
                    metrics.GEN_REQUESTS.labels(outcome="retry_scheduled").inc()
                    retry = {
                        "product_id": job.product_id, "version": job.version, "audiences": [aud], "reason": "retry",
                        "priority": job.priority, "attempt": attempt, "not_before_ms": at_ms + int(delay * 1000),
                    }
                    if job.target_model is not None:  # a retried upgrade stays an upgrade
                        retry["model_version"] = job.target_model
                    retries.append(retry)
                text, source = self._fallback(product, aud), "fallback"
                verdict = GateVerdict(passed=True, reasons=(f"fallback: generation failed ({note}): {message}",))
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
        return records, retries

    async def process(self, requests: list[dict]) -> list[DescriptionRecord]:
        """Coalesce, plan, generate, gate and CAS-write due requests; returns the records Redis accepted.

        Retries of failed generations are handed to `enqueue` (awaited) before this returns.
        """
        jobs = await self.plan(coalesce(requests))
        written: list[DescriptionRecord] = []
        retries: list[dict] = []
        bs = self.settings.worker.batch_size
        for i in range(0, len(jobs), bs):
            chunk = jobs[i : i + bs]
            results = await self._generate(chunk)
            records, again = self.build_records(chunk, results)
            retries += again
            # upgrade mode only for the requested model's own text (never for a generator-failure fallback)
            upgrade = [j.target_model is not None and r.model_version == j.target_model for j, r in zip(chunk, records)]
            codes = await self.services.store.publish_codes(records, upgrade)
            for rec, code in zip(records, codes):
                result = {1: "written", 0: "not_newer", -1: "deleted", -2: "stale"}.get(code, "other")
                metrics.REDIS_WRITES.labels(result=result).inc()
                metrics.GEN_REQUESTS.labels(outcome=f"redis_{result}").inc()
                if code == 1:
                    metrics.PUBLISHED.labels(source=rec.source).inc()
                    written.append(rec)
        if retries:
            await self.enqueue(retries)
        return written

    async def handle(self, requests: list[dict]) -> list[DescriptionRecord]:
        """One batch from the topic: process what is due, re-send parked retries that are not (yet).

        If the batch holds only parked retries, wait for the earliest (at most `park_max_s`) instead
        of cycling them through the broker in a tight loop.
        """
        due, parked = split_due(requests, now_ms())
        if parked and not due:
            earliest = min(int(r["not_before_ms"]) for r in parked)
            wait_s = min(self.park_max_s, max(0.0, (earliest - now_ms()) / 1000))
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            due, parked = split_due(parked, now_ms())
        written = await self.process(due) if due else []
        if parked:
            metrics.GEN_REQUESTS.labels(outcome="parked").inc(len(parked))
            await self.enqueue(parked)
        return written


def register(app: faust.App, settings: Settings, services: Services) -> None:
    async def enqueue(requests: list[dict]) -> None:
        futs = [
            await app.gen_topic.send(key=r["product_id"].encode(), value=orjson.dumps(r))  # type: ignore[attr-defined]
            for r in requests
        ]
        for fut in futs:  # acked before the batch's offsets can be committed
            await fut

    worker = GenerationWorker(settings, services, enqueue)
    app.generation_worker = worker  # type: ignore[attr-defined]
    events_in = metrics.EVENTS_IN.labels(topic=settings.topics.generation_requests)
    batch_hist = metrics.BATCH_SIZE.labels(agent="generation")

    @app.agent(app.gen_topic, name="descstream-generation")  # type: ignore[attr-defined]
    async def generation(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.worker.batch_size, within=settings.worker.batch_timeout_s):
            try:
                batch_hist.observe(len(events))
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
                        await send_dead_letter(app.dlq_topic, dl, key)  # type: ignore[attr-defined]
                written = await worker.handle(requests)
                futs = [
                    await app.desc_topic.send(key=rec.product_id.encode(), value=encode(rec))  # type: ignore[attr-defined]
                    for rec in written
                ]
                for fut in futs:
                    await fut
            except Exception as exc:  # anything else: exit WITHOUT acknowledging this batch (streams/fatal.py)
                crash_worker("generation", exc)
