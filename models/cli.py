"""CLI for the model tooling: `train generator`, `train tagger`, `eval`, `export`, `generate`.

Standalone: `python -m models.cli --help`. Mounted into `descstream` by `descstream/cli.py` with either
    from models import cli as models_cli
    models_cli.register(app)                                  # all five at once, or individually:
    app.add_typer(models_cli.train_app, name="train")
    app.command("eval")(models_cli.eval_cmd)
    app.command("export")(models_cli.export_cmd)
    app.command("generate")(models_cli.generate_cmd)
Heavy imports (torch, transformers) happen inside the commands, so `descstream --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(help="Model tooling: fine-tune, evaluate, export and batch-generate.", no_args_is_help=True)
train_app = typer.Typer(help="Fine-tune the description generator or the product tagger.", no_args_is_help=True)


def _console():
    from rich.console import Console

    return Console(stderr=True)


@train_app.command("generator")
def train_generator_cmd(
    out: Path = typer.Option(Path("runs/generator"), "--out", help="Run directory (adapter/, training_log.jsonl, train_state/, summary.json)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Your own pairs: JSONL, CSV or AdvertiseGen file. Default: synthetic catalogue."),
    data_format: str = typer.Option("auto", "--data-format", help="auto | jsonl | csv | advertisegen"),
    n_products: int = typer.Option(600, "--n-products", help="Synthetic products (each with several audiences)."),
    audiences_per_product: int = typer.Option(3, "--audiences-per-product"),
    data_seed: int = typer.Option(0, "--data-seed"),
    full: bool = typer.Option(False, "--full", help="Full fine-tuning instead of LoRA (writes weights/)."),
    tiny: bool = typer.Option(False, "--tiny", help="Tiny random-init model of the same architecture (tests)."),
    model_dir: Optional[Path] = typer.Option(None, "--model-dir", help="Base model folder (default: cached SmolLM2)."),
    lora_r: int = typer.Option(16, "--lora-r"),
    lora_alpha: int = typer.Option(32, "--lora-alpha"),
    dropout: float = typer.Option(0.05, "--dropout", help="LoRA dropout (attention dropout with --full)."),
    lora_mlp: bool = typer.Option(False, "--lora-mlp", help="Also adapt the MLP projections."),
    lora_layers: Optional[int] = typer.Option(None, "--lora-layers", help="Adapt only the top N layers (faster backward)."),
    lr: float = typer.Option(2e-4, "--lr"),
    weight_decay: float = typer.Option(0.01, "--weight-decay"),
    warmup_steps: int = typer.Option(20, "--warmup-steps"),
    schedule: str = typer.Option("cosine", "--schedule", help="cosine | linear"),
    batch_size: int = typer.Option(8, "--batch-size"),
    grad_accum: int = typer.Option(1, "--grad-accum"),
    max_len: int = typer.Option(448, "--max-len", help="Max tokens per example (prompt + target)."),
    epochs: float = typer.Option(3.0, "--epochs"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps"),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", help="Wall-clock budget for training."),
    eval_every: int = typer.Option(50, "--eval-every", help="Optimizer steps between validation-loss checks."),
    eval_examples: int = typer.Option(96, "--eval-examples", help="Validation examples per check (0 = all)."),
    patience: int = typer.Option(3, "--patience", help="Evaluations without improvement before stopping (0 = off)."),
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from train_state/."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads."),
    no_progress: bool = typer.Option(False, "--no-progress"),
) -> None:
    """Fine-tune SmolLM2-135M-Instruct to write product descriptions (LoRA by default)."""
    from models.train_generator import TrainConfig, train

    cfg = TrainConfig(
        out_dir=str(out), data=str(data) if data else None, data_format=data_format, n_products=n_products,
        audiences_per_product=audiences_per_product, data_seed=data_seed, full=full, tiny=tiny,
        model_dir=str(model_dir) if model_dir else None, lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=dropout,
        lora_mlp=lora_mlp, lora_layers=lora_layers, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps, schedule=schedule,
        batch_size=batch_size, grad_accum=grad_accum, max_len=max_len, epochs=epochs, max_steps=max_steps,
        max_minutes=max_minutes, eval_every=eval_every, eval_examples=eval_examples, patience=patience, seed=seed,
        resume=resume, threads=threads, progress=not no_progress,
    )
    con = _console()
    try:
        summary = train(cfg, log=con.print)
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        con.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2)
    con.print(f"summary: {out / 'summary.json'} (best validation loss {summary['best_val_loss']})")


@train_app.command("tagger")
def train_tagger_cmd(
    out: Path = typer.Option(Path("runs/tagger"), "--out"),
    data: Optional[Path] = typer.Option(None, "--data", help="JSONL of products with `category`. Default: synthetic catalogue."),
    n_products: int = typer.Option(3000, "--n-products"),
    data_seed: int = typer.Option(1, "--data-seed"),
    level: str = typer.Option("full", "--level", help="top (top-level category) | full (whole path)"),
    epochs: int = typer.Option(4, "--epochs"),
    lr: float = typer.Option(1e-3, "--lr", help="LoRA + head learning rate."),
    batch_size: int = typer.Option(32, "--batch-size"),
    lora_r: int = typer.Option(8, "--lora-r"),
    seed: int = typer.Option(0, "--seed"),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes"),
    no_progress: bool = typer.Option(False, "--no-progress"),
) -> None:
    """Fine-tune the MiniLM encoder (LoRA + classification head) to predict a product's category."""
    from models.train_tagger import TaggerConfig, train_tagger

    if level not in ("top", "full"):
        raise typer.BadParameter("--level must be top or full")
    cfg = TaggerConfig(
        out_dir=str(out), data=str(data) if data else None, n_products=n_products, data_seed=data_seed, level=level,
        epochs=epochs, lr=lr, batch_size=batch_size, lora_r=lora_r, seed=seed, max_minutes=max_minutes,
        progress=not no_progress,
    )
    summary = train_tagger(cfg, log=_console().print)
    typer.echo(json.dumps({k: summary[k] for k in ("test_accuracy", "test_macro_f1", "val_accuracy", "adapter_bytes", "train_minutes")}))


def eval_cmd(
    run: Optional[Path] = typer.Option(None, "--run", help="Trained run dir (or exported version dir). Omit to score only the base model."),
    gold: Optional[str] = typer.Option(None, "--gold", help="Score the gold set's systems instead: a split part (dev, test, test2) or all "
                                       "(editor labels, verifier flags and agreement)."),
    learned: str = typer.Option("off", "--learned", help="Also the learned sentence verifier: off (as the gate) | auto | local | triton."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output dir for eval.json/eval.md/eval.png (default: <run>/eval)."),
    limit: int = typer.Option(40, "--limit", help="Held-out products to evaluate (0 = all)."),
    audiences: int = typer.Option(2, "--audiences", help="Audiences per product."),
    max_new_tokens: int = typer.Option(160, "--max-new-tokens", help="A cap: generation stops at <|im_end|> (matches ModelSettings.max_new_tokens)."),
    batch_size: int = typer.Option(8, "--batch-size"),
    no_base: bool = typer.Option(False, "--no-base", help="Skip the base model."),
    test_file: Optional[Path] = typer.Option(None, "--test-file", help="Examples JSONL (models.dataset format) instead of the run's test split."),
) -> None:
    """Base vs fine-tuned on held-out products (BLEU-4, ROUGE-L, Distinct-1/2, coverage, verifier errors, gate),
    or with --gold, every gold-set system as the editor and the verifier read it."""
    from models.evaluate import METRIC_ROWS, run_eval

    if gold is not None:
        from models.gold_report import write_report
        from models.verifier.files import load_scorer

        from models.gold import GOLD_DIR

        parts = set(json.loads((GOLD_DIR / "split.json").read_text())) | {"all"}
        if gold not in parts:
            raise typer.BadParameter(f"--gold must be one of {', '.join(sorted(parts))}")
        scorer, threshold, desc = load_scorer(learned)
        gold_out = out or Path("runs/eval-gold")
        res = write_report(gold_out, gold, scorer, threshold, desc)
        _console().print((gold_out / "gold_eval.md").read_text(), highlight=False)
        _console().print(f"wrote {gold_out}/gold_eval.json, gold_eval.md ({res['seconds']}s)")
        return

    out_dir = out or ((run / "eval") if run else Path("runs/eval-base"))
    result = run_eval(run, out_dir, limit=limit or None, audiences_per_product=audiences, max_new_tokens=max_new_tokens,
                      batch_size=batch_size, include_base=not no_base, test_file=test_file, log=_console().print)
    from rich.table import Table

    table = Table(title=f"{result['n_examples']} texts, {result['n_products']} held-out products")
    table.add_column("metric")
    for s in result["systems"]:
        table.add_column(s, justify="right")
    for key, label, fmt in METRIC_ROWS:
        table.add_row(label, *["n/a" if result["systems"][s].get(key) is None else fmt.format(result["systems"][s][key]) for s in result["systems"]])
    _console().print(table)
    _console().print(f"wrote {out_dir}/eval.json, eval.md, eval.png")


def export_cmd(
    run: Optional[Path] = typer.Option(None, "--run", help="Generator run dir to export as a new desc_generator version."),
    tagger: Optional[Path] = typer.Option(None, "--tagger", help="Tagger run dir to export as a new product_tagger version."),
    repository: Optional[Path] = typer.Option(None, "--repository", help="Triton model repository (default: serving/model_repository)."),
    name: Optional[str] = typer.Option(None, "--name", help="Name recorded in the model card (default: run dir name)."),
    eval_dir: Optional[Path] = typer.Option(None, "--eval", help="`descstream eval --out` dir whose metrics go in the card "
                                            "(default: the run's own eval/; required when --run is an exported version)."),
) -> None:
    """Write a new numbered version into the Triton model repository (never overwrites an export). `--run` may be
    an exported version dir: its weights are re-released as a new version with the metrics of `--eval`."""
    from models.export import export_generator, export_tagger

    if not run and not tagger:
        raise typer.BadParameter("give --run and/or --tagger")
    try:
        if run:
            typer.echo(f"desc_generator: {export_generator(run, repository, name, eval_dir)}")
        if tagger:
            typer.echo(f"product_tagger: {export_tagger(tagger, repository, name)}")
    except FileNotFoundError as exc:
        _console().print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2)


def generate_cmd(
    input: Path = typer.Option(..., "--input", help="Products JSONL (one `products`-topic JSON per line)."),
    output: Path = typer.Option(..., "--output", help="Output JSONL (one line per product x audience)."),
    audience: Optional[List[str]] = typer.Option(None, "--audience", help="Audience(s); default: those relevant to each product's category."),
    via: str = typer.Option("auto", "--via", help="auto | triton | local"),
    model: Optional[Path] = typer.Option(None, "--model", help="Version dir / run dir / artefact dir (local). Default: latest exported version."),
    batch_size: int = typer.Option(8, "--batch-size"),
    max_new_tokens: int = typer.Option(160, "--max-new-tokens", help="A cap: generation stops at <|im_end|> (matches ModelSettings.max_new_tokens)."),
    tiny: bool = typer.Option(False, "--tiny", help="Use the tiny random model (tests)."),
    candidates: int = typer.Option(1, "--candidates", min=1, max=16, help="Texts written per description (seeds 0..k-1); "
                                   "the verifier picks the one to publish."),
) -> None:
    """Generate + gate descriptions for a products file; bad lines are reported, not fatal."""
    from models.generate_batch import run_batch

    if via not in ("auto", "triton", "local"):
        raise typer.BadParameter("--via must be auto, triton or local")
    con = _console()
    try:
        rep = run_batch(input, output, audiences=audience, via=via, model=model, batch_size=batch_size,
                        max_new_tokens=max_new_tokens, tiny=tiny, log=con.print, candidates=candidates)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        con.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2)
    con.print(
        f"{rep.products} products -> {rep.outputs} descriptions ({rep.generated} generated, {rep.fallback} fallback) "
        f"via {rep.via} (model {rep.model_version}) in {rep.seconds:.1f}s; {len(rep.errors)} bad line(s)"
    )


def verify_cmd(
    products: Path = typer.Option(..., "--products", help="Products JSONL (one `products`-topic JSON per line)."),
    texts: Path = typer.Option(..., "--texts", help="Texts JSONL: product_id, audience (default `default`), text."),
    output: Path = typer.Option(..., "--output", help="Verdicts JSONL: product_id, audience, ok, errors[type, span, why]."),
    learned: str = typer.Option("off", "--learned", help="Also the learned sentence verifier: off (as the gate) | auto | local | triton."),
) -> None:
    """Check any texts against their products' facts, as the publishing gate does; one verdict per text."""
    from models.verifier.files import verify_files

    if learned not in ("auto", "local", "triton", "off"):
        raise typer.BadParameter("--learned must be auto, local, triton or off")
    con = _console()
    for path in (products, texts):
        if not path.is_file():
            con.print(f"[red]error:[/red] {path} not found")
            raise typer.Exit(2)
    try:
        rep = verify_files(products, texts, output, learned=learned,
                           progress=lambda n: con.print(f"verified {n} texts", highlight=False))
    except (FileNotFoundError, ConnectionError) as exc:
        con.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1)
    for file, line, reason in rep.errors:
        con.print(f"{file}:{line}: {reason}", highlight=False)
    con.print(f"{rep.texts} texts: {rep.ok} ok, {rep.flagged} flagged; {len(rep.errors)} bad line(s); "
              f"learned verifier {rep.learned}; {rep.seconds:.1f}s -> {output}", highlight=False)
    if rep.errors:
        raise typer.Exit(3)


app.add_typer(train_app, name="train")
app.command("verify")(verify_cmd)
app.command("eval")(eval_cmd)
app.command("export")(export_cmd)
app.command("generate")(generate_cmd)


def register(parent: typer.Typer) -> None:
    """Mount `train` (generator, tagger), `verify`, `eval`, `export` and `generate` on another Typer app."""
    parent.add_typer(train_app, name="train")
    parent.command("verify")(verify_cmd)
    parent.command("eval")(eval_cmd)
    parent.command("export")(export_cmd)
    parent.command("generate")(generate_cmd)


if __name__ == "__main__":
    app()
