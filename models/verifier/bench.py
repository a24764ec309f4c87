"""What the verifier costs per text, beside what generation costs: `python -m models.verifier.bench --out
bench/results/verifier.json`.

For `--texts` (default 64) texts of the gold set (`models/data/gold/texts.jsonl`, products from
`models/data/gold/products.jsonl`), each text is split into sentences and all its sentences are scored
in one batch against `facts_text(product)`. Measured:

- in-process: `SentenceVerifier.unsupported_probs`, one text after another, with torch's default thread
  count and with 1 thread (on a small machine shared with other work, 2 threads can be slower than 1);
- through Triton: a tritonserver started here on free ports over a temporary repository holding only
  `fact_verifier` (linked to `serving/model_repository/fact_verifier`), called with
  `TritonClient.verify_sentences` — one text after another (latency), then all texts at once (throughput,
  the dynamic batcher merging requests).

Also measured: the span rules (`verify_many` without the learned reader) per text, and generation with the
shipped generator version in-process (`--generation N` texts of the same products, batch 8, the served
decoding), so `cost_vs_generation` states each verifier part as a share of the generation cost per text.

Writes ms per text (mean, p50, p90), sentences per text, the Triton-vs-in-process agreement, and the
machine (cores, CPU model, load average, torch version and threads).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GOLD = REPO / "models" / "data" / "gold"


def load_texts(n: int) -> list[tuple[object, str, str]]:
    from descstream.schemas import ProductUpsert

    products = {}
    for line in (GOLD / "products.jsonl").read_text().splitlines():
        if line.strip():
            p = ProductUpsert.model_validate_json(line)
            products[p.product_id] = p
    out = []
    for line in (GOLD / "texts.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        p = products.get(row.get("product_id"))
        if p is not None and row.get("text"):
            out.append((p, str(row["text"]), str(row.get("id", ""))))
        if len(out) >= n:
            break
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _stats(ms: list[float]) -> dict:
    q = statistics.quantiles(ms, n=10) if len(ms) >= 2 else [ms[0]] * 9
    return {"mean": round(statistics.fmean(ms), 2), "p50": round(statistics.median(ms), 2), "p90": round(q[8], 2),
            "min": round(min(ms), 2), "max": round(max(ms), 2)}


def bench_in_process(verifier, batches: list[list[tuple[str, str]]], repeats: int) -> tuple[dict, list[list[float]]]:
    verifier.unsupported_probs(batches[0])  # warm-up
    per_text: list[float] = []
    probs: list[list[float]] = []
    for r in range(repeats):
        for pairs in batches:
            t = time.perf_counter()
            out = verifier.unsupported_probs(pairs)
            per_text.append((time.perf_counter() - t) * 1000)
            if r == 0:
                probs.append(out)
    return _stats(per_text), probs


async def bench_triton(settings, batches: list[list[tuple[str, str]]], repeats: int) -> tuple[dict, dict, list[list[float]]]:
    from serving.client import TritonClient

    async with TritonClient.from_settings(settings) as client:
        await client.verify_sentences(batches[0])  # warm-up
        seq: list[float] = []
        probs: list[list[float]] = []
        for r in range(repeats):
            for pairs in batches:
                t = time.perf_counter()
                out = await client.verify_sentences(pairs)
                seq.append((time.perf_counter() - t) * 1000)
                if r == 0:
                    probs.append(out)
        walls = []
        for _ in range(repeats):
            t = time.perf_counter()
            await asyncio.gather(*(client.verify_sentences(p) for p in batches))
            walls.append((time.perf_counter() - t) * 1000)
        conc = {"wall_ms_all_texts": [round(w, 1) for w in walls],
                "ms_per_text": round(statistics.fmean(walls) / len(batches), 2)}
    return _stats(seq), conc, probs


def start_triton(tmp: Path):
    import httpx

    from descstream.config import Settings
    from serving.triton_env import free_ports, triton_command

    repo = tmp / "repo"
    repo.mkdir()
    (repo / "fact_verifier").symlink_to(REPO / "serving" / "model_repository" / "fact_verifier")
    http, grpc, metrics = free_ports(3)
    argv, env = triton_command(repo, http, grpc, metrics, model_mode="real")
    log = open(tmp / "triton.log", "wb")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"tritonserver exited: {(tmp / 'triton.log').read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{http}/v2/health/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() - t0 > 180:
            proc.terminate()
            raise RuntimeError("tritonserver not ready in 180 s")
        time.sleep(0.3)
    settings = Settings(triton={"grpc_url": f"127.0.0.1:{grpc}", "http_url": f"127.0.0.1:{http}", "timeout_s": 120.0})
    return proc, settings, round(time.monotonic() - t0, 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "verifier.json")
    ap.add_argument("--texts", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-triton", action="store_true")
    ap.add_argument("--inproc-threads", default="0,1", help="torch thread counts for the in-process runs (0 = torch's default)")
    ap.add_argument("--generation", type=int, default=16, help="texts generated to measure generation cost (0 = skip)")
    args = ap.parse_args(argv)

    import torch

    from models.verifier.learned import SentenceVerifier, default_artifacts_dir, facts_text, split_sentences

    rows = load_texts(args.texts)
    batches = [[(facts_text(p), s) for s in split_sentences(text)] for p, text, _ in rows]
    batches = [b for b in batches if b]
    n_sent = [len(b) for b in batches]
    t = time.perf_counter()
    verifier = SentenceVerifier.load(default_artifacts_dir())
    load_s = time.perf_counter() - t
    default_threads = torch.get_num_threads()
    inproc_runs = {}
    probs_local: list[list[float]] = []
    for n in [int(x) for x in args.inproc_threads.split(",") if x.strip()]:
        torch.set_num_threads(n or default_threads)
        stats, probs = bench_in_process(verifier, batches, args.repeats)
        inproc_runs[f"torch_threads_{torch.get_num_threads()}"] = stats
        probs_local = probs_local or probs
    torch.set_num_threads(default_threads)
    result = {
        "what": "ms per text: all sentences of one gold text scored in one batch against facts_text(product)",
        "texts": len(batches), "repeats": args.repeats,
        "sentences_per_text": {"mean": round(statistics.fmean(n_sent), 2), "max": max(n_sent), "total": sum(n_sent)},
        "flagged_sentences_share": round(sum(p >= verifier.threshold for ps in probs_local for p in ps) / sum(n_sent), 4),
        "threshold": verifier.threshold,
        "in_process": {"ms_per_text": inproc_runs, "load_s": round(load_s, 2)},
    }
    if not args.no_triton:
        with tempfile.TemporaryDirectory(prefix="verifier-bench-") as tmp:
            proc, settings, ready_s = start_triton(Path(tmp))
            try:
                seq, conc, probs_triton = asyncio.run(bench_triton(settings, batches, args.repeats))
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        diff = max(abs(a - b) for x, y in zip(probs_local, probs_triton) for a, b in zip(x, y))
        result["triton"] = {"sequential_ms_per_text": seq, "concurrent": conc, "server_ready_s": ready_s,
                            "max_abs_diff_vs_in_process": float(f"{diff:.2e}"),
                            "model_config": "fact_verifier alone, max_batch_size 64, 5 ms queue delay, torch_threads 0"}
    from models.verifier import verify_many

    t = time.perf_counter()
    for _ in range(args.repeats):
        verify_many([(p, "default", text) for p, text, _ in rows])
    rules_ms = (time.perf_counter() - t) * 1000 / (args.repeats * len(rows))
    result["rules"] = {"ms_per_text": round(rules_ms, 3)}
    if args.generation:
        from models.generate_batch import LocalBackend, latest_version_dir

        version = latest_version_dir()
        backend = LocalBackend(version, batch_size=8)
        pairs = [(p, "default") for p, _, _ in rows[: args.generation]]
        t = time.perf_counter()
        backend.generate(pairs)
        gen_ms = (time.perf_counter() - t) * 1000 / len(pairs)
        result["generation"] = {"model": backend.version, "texts": len(pairs), "batch_size": 8,
                                "ms_per_text": round(gen_ms, 1), "torch_threads": torch.get_num_threads()}
        learned_ms = result.get("triton", {}).get("concurrent", {}).get("ms_per_text")
        result["cost_vs_generation"] = {
            "rules": round(rules_ms / gen_ms, 5),
            "learned_triton_batched": round(learned_ms / gen_ms, 4) if learned_ms else None,
            "learned_in_process_1_thread": round(inproc_runs.get("torch_threads_1", {}).get("mean", 0) / gen_ms, 4)
            if "torch_threads_1" in inproc_runs else None,
        }
    result["machine"] = {
        "cores": os.cpu_count(), "cpu_model": cpu_model(), "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
    }
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
