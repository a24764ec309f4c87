"""`make reliability`: every fault scenario plus the hostile corpus, then the report table and JSON.

    .venv/bin/python -m tests.reliability.run --full --out bench/results/reliability.json

`--full`: 30 s outages, 40 products, 2,000 hostile messages end to end (10,000 at the decoder level), and
200 hostile messages through Triton serving the real generator (`hostile_real`; 60 without `--full`).
Without it: the CI durations (scaled by DESCSTREAM_RELIABILITY_SCALE). `--only a,b` runs a subset of
`hostile,hostile_real,worker_sigkill,triton_down,redis_down,broker_restart`. Exit code 1 unless the report is ok.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

for _name in [k for k in os.environ if k.startswith("DESCSTREAM_") and not k.startswith("DESCSTREAM_RELIABILITY")
              and k not in ("DESCSTREAM_MODEL_CACHE", "DESCSTREAM_TRITON_BACKENDS")]:
    del os.environ[_name]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ALL = ("hostile", "hostile_real", "worker_sigkill", "triton_down", "redis_down", "broker_restart")


def _unit_level(n: int) -> tuple[int, int]:
    from descstream.schemas import InvalidEvent, decode_behavior, decode_product

    from . import hostile

    wrong = 0
    msgs = hostile.generate(n, seed=0)
    for m in msgs:
        dec = decode_product if m.topic == hostile.PRODUCTS else decode_behavior
        limit = hostile.PRODUCT_MAX_BYTES if m.topic == hostile.PRODUCTS else hostile.BEHAVIOR_MAX_BYTES
        try:
            dec(m.value, limit)
            got = "accept"
        except InvalidEvent:
            got = "reject"
        wrong += got != m.expect
    return len(msgs), wrong


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="30 s outages, bigger load and corpus")
    ap.add_argument("--out", default="bench/results/reliability.json")
    ap.add_argument("--only", default=",".join(ALL))
    ap.add_argument("--run-dir", default=None, help="where logs go (default: a temp dir, kept)")
    args = ap.parse_args(argv)

    from . import faults, report
    from .hostile_e2e import run_hostile_e2e

    d = faults.Durations.from_env(full=args.full)
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="descstream-reliability-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    wanted = [x.strip() for x in args.only.split(",") if x.strip()]
    print(f"reliability run ({'full' if args.full else 'short'}), logs in {run_dir}", flush=True)
    stack = faults.reliability_stack(run_dir / "stack")
    t0 = time.monotonic()
    stack.up(progress=lambda m: print("  " + m, flush=True))
    print(f"stack up in {time.monotonic() - t0:.0f}s", flush=True)
    rows: list[dict] = []
    try:
        if "hostile" in wanted:
            t = time.monotonic()
            n_unit, wrong = _unit_level(10_000)
            res = asyncio.run(run_hostile_e2e(stack, run_dir, 2000 if args.full else 1000))
            rows.append(report.hostile_row(res, n_unit, wrong, time.monotonic() - t))
            print(report.table(rows[-1:]), flush=True)
        if "hostile_real" in wanted:  # the real generator behind Triton: its own stack (real weights)
            t = time.monotonic()
            real = faults.real_generator_stack(run_dir / "stack-real")
            real.up(progress=lambda m: print("  " + m, flush=True))
            try:
                res = asyncio.run(run_hostile_e2e(real, run_dir, 200 if args.full else 60, pool=8, settle_timeout=1800.0))
            finally:
                real.down()
            row = report.hostile_row(res, 0, 0, time.monotonic() - t)
            row["fault"] = "hostile inputs, real generator"
            rows.append(row)
            print(report.table(rows[-1:]), flush=True)
        for name in wanted:
            if name in ("hostile", "hostile_real"):
                continue
            t = time.monotonic()
            try:
                res = asyncio.run(faults.SCENARIOS[name](stack, run_dir, d))
                row = res.row()
            except Exception as exc:  # a scenario that blows up is a crash row, the others still run
                row = {"fault": name, "load_eps": None, "expected": None, "found": None, "stale": None, "lost": None,
                       "inputs": None, "crashes": 1, "detail": {"error": repr(exc)[:2000]}}
            row["detail"]["seconds"] = round(time.monotonic() - t, 1)
            row.setdefault("injected", 0)
            rows.append(row)
            print(report.table(rows[-1:]), flush=True)
    finally:
        stack.down()
    doc = report.write(rows, Path(args.out), mode="full" if args.full else "short",
                       durations=dataclasses.asdict(d), notes=report.NOTES)
    print()
    print(report.table(rows))
    print(f"\nok={doc['ok']}  ->  {args.out}")
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
