"""Serving benchmark: `python -m serving.bench --out bench/results/serving.json [--mode tiny|real]`.

Starts its own tritonserver (bundled binary, free ports) on a temporary repository that links the real
model versions and adds `desc_generator_seq`: the same generator with `max_batch_size: 1` (no dynamic
batching). Measures, with the Python gRPC client (perf_analyzer is not used: it cannot build the JSON
product inputs with varied content, and the Python client is what the workers use):

- desc_generator vs desc_generator_seq at concurrency 1 and 8: descriptions/s, generated tokens/s,
  p50/p95 latency (greedy, fixed max_new_tokens, products from `models.catalogue`);
- the same 8 requests through in-process `DescGenerator.generate` (the exact code Triton runs) in one
  batch, against Triton's wall time for those 8 concurrent requests;
- text_embedder and product_tagger requests/s (one text per request, 32 in flight).

Targets (reported, not asserted): dynamic batching >= 3x sequential at concurrency 8; Triton within 10 %
of in-process generate for the same batch. The machine (CPU count/model, load, versions) and the mode go
into the JSON: the CPUs here are shared, so compare runs only with their load averages in mind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_REPO = REPO_ROOT / "serving" / "model_repository"


def latest_version(model_dir: Path) -> Path:
    versions = sorted((p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    return versions[-1]


def build_repository(dst: Path) -> dict[str, str]:
    """Temp repository: each model's latest version linked in; plus desc_generator_seq (max_batch_size 1)."""
    versions = {}
    for name in ("desc_generator", "text_embedder", "product_tagger"):
        (dst / name).mkdir(parents=True)
        shutil.copy2(MODEL_REPO / name / "config.pbtxt", dst / name / "config.pbtxt")
        v = latest_version(MODEL_REPO / name)
        (dst / name / v.name).symlink_to(v.resolve(), target_is_directory=True)
        versions[name] = v.name
    seq = dst / "desc_generator_seq"
    seq.mkdir()
    cfg = (MODEL_REPO / "desc_generator" / "config.pbtxt").read_text()
    cfg = re.sub(r"max_batch_size:\s*\d+", "max_batch_size: 1", cfg)
    cfg = re.sub(r"dynamic_batching\s*\{[^}]*\}", "", cfg)
    (seq / "config.pbtxt").write_text(cfg)
    v = versions["desc_generator"]
    (seq / v).symlink_to((MODEL_REPO / "desc_generator" / v).resolve(), target_is_directory=True)
    return versions


def start_triton(repo: Path, mode: str, log: Path, timeout: float = 600.0) -> tuple[subprocess.Popen, int]:
    from serving.triton_env import free_ports, triton_command

    http, grpc, metrics = free_ports(3)
    argv, env = triton_command(repo, http, grpc, metrics, model_mode=mode)
    proc = subprocess.Popen(argv, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tritonserver exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=1) as r:
                if r.status == 200:
                    return proc, grpc
        except OSError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise TimeoutError(f"tritonserver not ready in {timeout}s:\n{log.read_text()[-3000:]}")


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def gen_inputs(product_json: bytes, audience: str, mnt: int) -> list[Any]:
    import tritonclient.grpc.aio as g

    arrays = [
        ("PRODUCT_JSON", np.array([[product_json]], dtype=np.object_), "BYTES"),
        ("AUDIENCE", np.array([[audience.encode()]], dtype=np.object_), "BYTES"),
        ("MAX_NEW_TOKENS", np.array([[mnt]], dtype=np.int32), "INT32"),
        ("TEMPERATURE", np.array([[0.0]], dtype=np.float32), "FP32"),
        ("SEED", np.array([[0]], dtype=np.int64), "INT64"),
    ]
    out = []
    for name, arr, dt in arrays:
        i = g.InferInput(name, list(arr.shape), dt)
        i.set_data_from_numpy(arr)
        out.append(i)
    return out


async def run_load(client: Any, model: str, make_inputs: list[Any], concurrency: int, count_tokens: bool) -> dict[str, Any]:
    """Send all requests with `concurrency` in flight; latency per request, totals."""
    sem = asyncio.Semaphore(concurrency)
    lat: list[float] = []
    tokens = 0

    async def one(inputs: list[Any]) -> None:
        nonlocal tokens
        async with sem:
            t0 = time.perf_counter()
            res = await client.infer(model, inputs, client_timeout=600)
            lat.append(time.perf_counter() - t0)
            if count_tokens:
                tokens += int(res.as_numpy("GENERATED_TOKENS").sum())

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in make_inputs))
    wall = time.perf_counter() - t0
    n = len(make_inputs)
    out = {
        "requests": n,
        "concurrency": concurrency,
        "wall_s": round(wall, 3),
        "requests_per_s": round(n / wall, 3),
        "p50_latency_ms": round(pct(lat, 50) * 1000, 1),
        "p95_latency_ms": round(pct(lat, 95) * 1000, 1),
    }
    if count_tokens:
        out["generated_tokens"] = tokens
        out["tokens_per_s"] = round(tokens / wall, 2)
    return out


def machine(mode: str) -> dict[str, Any]:
    import torch

    from descstream.machine import describe_machine

    return {
        **describe_machine(),
        "gpu": torch.cuda.is_available(),
        "torch_threads": torch.get_num_threads(),
        "mode": mode,
        "tritonserver": "2.51.0 (nvidia-pytriton 0.7.0 bundle)",
        "client": "tritonclient.grpc.aio (Python)",
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    import tritonclient.grpc.aio as g

    from descstream.schemas import encode
    from models.catalogue import generate_catalogue

    mode = args.mode
    mnt = args.max_new_tokens or (64 if mode == "real" else 32)
    n_gen = args.requests
    products = generate_catalogue(n_gen, seed=7, adversarial_rate=0.0)
    audiences = ["default", "value_seekers", "gift_buyers", "families"]
    payloads = [(encode(p), audiences[i % len(audiences)]) for i, p in enumerate(products)]
    result: dict[str, Any] = {"machine": machine(mode), "settings": {"max_new_tokens": mnt, "generation_requests": n_gen,
                                                                   "greedy": True, "dynamic_batching": "max_batch_size 8, preferred 8, 20 ms queue delay"}}
    tmp = Path(tempfile.mkdtemp(prefix="descstream-bench-"))
    proc = None
    try:
        versions = build_repository(tmp / "repo")
        t0 = time.perf_counter()
        proc, grpc_port = start_triton(tmp / "repo", mode, tmp / "triton.log")
        result["triton_start_s"] = round(time.perf_counter() - t0, 1)
        client = g.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        # warm both generator models (first forward passes are slow)
        for model in ("desc_generator", "desc_generator_seq"):
            await client.infer(model, gen_inputs(payloads[0][0], "default", 4), client_timeout=600)
        res = await client.infer("desc_generator", gen_inputs(payloads[0][0], "default", 2))
        result["model_version"] = res.as_numpy("MODEL_VERSION")[0, 0].decode()
        result["versions"] = versions

        gen: dict[str, Any] = {}
        for model in ("desc_generator", "desc_generator_seq"):
            for conc in (1, 8):
                reqs = [gen_inputs(pj, aud, mnt) for pj, aud in payloads]
                key = f"{model}@c{conc}"
                gen[key] = await run_load(client, model, reqs, conc, True)
                gen[key]["descriptions_per_s"] = gen[key].pop("requests_per_s")
                print(key, gen[key], flush=True)
        result["generation"] = gen
        b, s = gen["desc_generator@c8"], gen["desc_generator_seq@c8"]
        result["dynamic_vs_sequential_c8"] = round(b["descriptions_per_s"] / s["descriptions_per_s"], 2)

        # the same batch of 8 through Triton (8 concurrent requests -> one batch) and in-process
        batch = payloads[:8]
        triton_walls = []
        for _ in range(args.repeats):
            r = await run_load(client, "desc_generator", [gen_inputs(pj, aud, mnt) for pj, aud in batch], 8, True)
            triton_walls.append(r["wall_s"])
        stats = await client.get_inference_statistics("desc_generator", as_json=True)
        result["desc_generator_batch_stats"] = [
            {"batch_size": int(x["batch_size"]), "executions": int(x["compute_infer"]["count"])}
            for x in stats["model_stats"][0].get("batch_stats", [])
        ]

        result["batch8_triton_walls_s"] = triton_walls
        print("batch8 triton walls", triton_walls, flush=True)
        for model, reqs in (
            ("text_embedder", [_text(f"{p.title}. {p.description}") for p in products * 4]),
            ("product_tagger", [_text(p.title, top_k=3) for p in products * 4]),
        ):
            try:  # real mode without an exported tagger answers every request with an error
                result[model] = await run_load(client, model, reqs, 32, False)
            except Exception as exc:  # noqa: BLE001
                result[model] = {"error": str(exc)[:300]}
            print(model, result[model], flush=True)
        await client.close()
        proc.terminate()
        proc.wait(30)
        proc = None

        # in-process: same code, same 8 prompts, one batch (Triton stopped so it does not compete)
        from serving.triton_models.desc_generator import DescGenerator, Row

        vdir = MODEL_REPO / "desc_generator" / versions["desc_generator"]
        dg = DescGenerator(vdir, mode=mode, version=versions["desc_generator"])
        rows = [Row(dg.prompt_ids(pj, aud), mnt, 0.0, 0) for pj, aud in batch]
        walls = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            outs = dg.generate(rows)
            walls.append(time.perf_counter() - t0)
        inproc = statistics.median(walls)
        trit = statistics.median(triton_walls)
        toks = sum(o.generated_tokens for o in outs)
        result["batch8_comparison"] = {
            "triton_wall_s_median": round(trit, 3),
            "in_process_wall_s_median": round(inproc, 3),
            "triton_overhead_pct": round(100 * (trit - inproc) / inproc, 1),
            "in_process_tokens_per_s": round(toks / inproc, 2),
            "repeats": args.repeats,
        }
        result["targets"] = {
            "dynamic_batching_ge_3x_sequential_c8": result["dynamic_vs_sequential_c8"] >= 3.0,
            "triton_within_10pct_of_in_process": result["batch8_comparison"]["triton_overhead_pct"] <= 10.0,
        }
        result["machine"]["load_avg_at_end"] = list(os.getloadavg())
        return result
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def _text(text: str, top_k: int | None = None) -> list[Any]:
    import tritonclient.grpc.aio as g

    i = g.InferInput("TEXT", [1, 1], "BYTES")
    i.set_data_from_numpy(np.array([[text.encode()]], dtype=np.object_))
    out = [i]
    if top_k is not None:
        k = g.InferInput("TOP_K", [1, 1], "INT32")
        k.set_data_from_numpy(np.array([[top_k]], dtype=np.int32))
        out.append(k)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench/results/serving.json")
    ap.add_argument("--mode", choices=["tiny", "real"], default=os.environ.get("DESCSTREAM_MODEL_MODE") or "real")
    ap.add_argument("--requests", type=int, default=16, help="generation requests per (model, concurrency)")
    ap.add_argument("--max-new-tokens", type=int, default=0, help="default 64 (real) / 32 (tiny)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    result = asyncio.run(bench(args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("dynamic_vs_sequential_c8", "batch8_comparison", "targets")}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
