"""The reliability report: one row per fault (plus the hostile-input run), printed as a table and saved as JSON.

Columns: fault, load held (events/s), updates expected, updates found, stale, lost, inputs tried, crashes,
injected claims published. `ok` is true only when every row has 0 lost, 0 stale, 0 crashes, 0 injected.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

COLUMNS = (
    ("fault", "fault"),
    ("load_eps", "load held (events/s)"),
    ("expected", "updates expected"),
    ("found", "updates found"),
    ("stale", "stale"),
    ("lost", "lost"),
    ("inputs", "inputs tried"),
    ("crashes", "crashes"),
    ("injected", "injected claims published"),
)


def hostile_row(res: Any, unit_messages: int, unit_wrong: int, seconds: float) -> dict:
    """The hostile-input run as a report row (`res` is a `hostile_e2e.HostileResult`)."""
    return {
        "fault": "hostile inputs",
        # the corpus is produced in a burst; the rate held is what the worker got through end to end
        "load_eps": round(res.messages / (res.produce_s + res.settle_s), 1) if (res.produce_s + res.settle_s) else None,
        "expected": res.products_expected,
        "found": res.products_current,
        # a stored text that fails the gate against the product's current facts is stale (or unfaithful)
        "stale": len(res.gate_failures),
        "lost": res.products_expected - res.products_current,
        "inputs": unit_messages + res.messages,
        "crashes": 0 if (res.worker_alive and res.sentinel_ok) else 1,
        "injected": len(res.injected_published),
        "detail": {
            "unit_messages": unit_messages, "unit_verdict_mismatches": unit_wrong, "e2e_messages": res.messages,
            "must_reject": res.must_reject, "dlq": res.dlq, "dlq_matched": res.dlq_matched, "dlq_missing": res.dlq_missing,
            "dlq_unexpected": res.dlq_unexpected[:10], "records_checked": res.records, "generated": res.generated, "gate_failures": res.gate_failures[:10],
            "injected_examples": res.injected_published[:10], "products_lost": res.products_lost[:10],
            "settle_s": res.settle_s, "seconds": round(seconds, 1),
        },
    }


def ok(rows: list[dict]) -> bool:
    return all(
        r.get("lost") == 0 and r.get("stale") == 0 and r.get("crashes") == 0 and r.get("injected", 0) == 0
        and r.get("expected", 0) == r.get("found", -1)
        for r in rows
    ) and all(r.get("detail", {}).get("dlq_missing", 0) == 0 and not r.get("detail", {}).get("dlq_unexpected") for r in rows) and all(
        # a generation-failure fallback must be replaced by a retry once Triton is back, unless it gave up
        (r.get("detail", {}).get("none_fallbacks_left") or 0) <= (r.get("detail", {}).get("gave_up") or 0) for r in rows
    )


def table(rows: list[dict]) -> str:
    heads = [h for _, h in COLUMNS]
    cells = [[("" if r.get(k) is None else str(r.get(k, 0))) for k, _ in COLUMNS] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(heads)]
    line = "+".join("-" * (w + 2) for w in widths)
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(heads, widths)) + " |", "|" + line.replace("+", "|") + "|"]
    for c in cells:
        out.append("| " + " | ".join(x.ljust(w) for x, w in zip(c, widths)) + " |")
    return "\n".join(out)


def write(rows: list[dict], out: Path, *, mode: str, durations: dict, notes: list[str]) -> dict:
    doc = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mode": mode,
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "durations": durations,
        "ok": ok(rows),
        "columns": [h for _, h in COLUMNS],
        "rows": rows,
        "notes": notes,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, default=str))
    return doc


NOTES = [
    "Broker: the embedded Tansu broker is memory-only. A restart loses every topic, record, committed offset and "
    "consumer group; Apache Kafka keeps all of them (replicated log on disk, __consumer_offsets). The broker row "
    "therefore counts only updates acknowledged by the restarted broker; the worker must not crash or hang and must "
    "process them once the topics exist again (the worker creates topics only at start-up; the harness recreates them, "
    "as Kafka would simply still have them).",
    "Tansu reports ListOffsets(latest) as the base offset of the partition's last record batch + 1 when that batch "
    "holds several records; Faust's recovery then sees its (correct) persisted changelog offset above the 'highwater' "
    "and a restarted worker exits with ConsistencyError. The harness sets Faust's RECOVERY_CONSISTENCY_CHECK=false "
    "for the embedded broker only (DESCSTREAM_RELIABILITY_TANSU_WORKAROUND=0 reproduces the crash).",
    "Triton outage (streams/generation_agent.py): the Triton client retries UNAVAILABLE with backoff and its breaker "
    "opens after breaker_failures consecutive failures (calls then fail fast with CircuitOpenError until "
    "breaker_reset_s). A failed generation publishes the faithful fallback at once (model_version 'none', reason in "
    "gate.reasons) and re-enqueues a retry on the generation-requests topic with exponential backoff (2, 4, 8, 16, "
    "32 s; 6 attempts); a retry that succeeds replaces the fallback; after the last attempt it stays until the next "
    "request for that (product, audience). Measured: no update lost or stale; but a retry whose text fails the gate "
    "(always, with tiny models) cannot replace the 'none' fallback: the CAS ranks both fallbacks equally "
    "(detail.none_fallbacks_left) - see the bug list.",
    "Redis outage: Redis is made to snapshot on shutdown (CONFIG SET save) so it returns with its data, as a "
    "production Redis with persistence does. A Redis error escapes the agents (Faust logs 'Crashed reason="
    "network:ConnectionError' and restarts them); the worker then stops consuming, and the group's committed offsets "
    "reach the log end although the updates were never written (detail.offsets, detail.events_in_products): a "
    "fresh worker resumes past them, so they are lost for good (detail.lost_after_worker_restart).",
    "Wire contract, accepted by design or by pydantic's lax mode (hostile corpus kinds coercion:*, unicode:*): "
    "numeric strings for version/price ('7', '19.99'), integral floats (7.0), booleans as numbers (version true -> 1, "
    "price true -> 1.0), unix-epoch integers and naive dates for updated_at, duplicate JSON keys (last wins), "
    "surrounding whitespace stripped. Invisible characters outside the rejected list are accepted: U+2060-U+2064, "
    "U+180E and the tag block U+E0000-U+E007F (used for 'ASCII smuggling' of hidden instructions). The gate checks "
    "every output, so none of this reaches a description, but rejecting Unicode category Cf (except ZWJ in emoji) "
    "and strict types on the wire would be stricter.",
    "Tiny models write gibberish (empty text at max_new_tokens=4): every generated text fails the gate and the "
    "faithful fallback is published; the checks (present, newest version, passes the gate, no injected claim) hold "
    "for generated text the same way.",
]
