"""Operations commands: `loadgen`, `replay`, `backfill`. Heavy imports stay inside the functions.

Mount on the main CLI (descstream/cli.py) with::

    from streams.ops_cli import backfill, loadgen, replay
    app.command("loadgen")(loadgen)
    app.command("replay")(replay)
    app.command("backfill")(backfill)

Also runnable directly: ``python -m streams.ops_cli loadgen --products 50 --duration 10``.
All three read the usual `Settings` (DESCSTREAM_* variables / descstream.toml).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="descstream operations: load generator, replay, backfill", no_args_is_help=True)


def _console():
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160)


def _cmdline(name: str) -> str:
    import shlex

    args = sys.argv[1:]
    if args and args[0] == name:
        args = args[1:]
    return " ".join(shlex.quote(a) for a in ["descstream", name, *args])


@app.command("loadgen")
def loadgen(
    products: int = typer.Option(200, help="catalogue size (published first)"),
    users: int = typer.Option(500, help="number of distinct shoppers"),
    rate: float = typer.Option(50.0, help="behaviour events per second"),
    duration: float = typer.Option(30.0, help="seconds of traffic (the run always stops by itself)"),
    seed: int = typer.Option(0, help="seed of the catalogue and the traffic"),
    mix: str = typer.Option("view=0.7,click=0.2,add_to_cart=0.07,purchase=0.03", help="event-kind weights"),
    update_rate: float = typer.Option(0.5, help="seller updates (mutate_product, version+1) per second"),
    out: Optional[Path] = typer.Option(None, help="results folder (default bench/results/loadgen-<timestamp>/)"),
    warmup: float = typer.Option(60.0, help="max seconds to let the worker process the catalogue first"),
    drain: float = typer.Option(30.0, help="max seconds to wait for the worker to catch up after the traffic"),
    group: Optional[str] = typer.Option(None, help="the worker's consumer group (default WorkerSettings.app_id)"),
    drift_period: float = typer.Option(20.0, help="seconds between a user's chances to change preferred category"),
    progress: bool = typer.Option(True, help="show a live progress bar"),
) -> None:
    """Synthetic shoppers and sellers against a running worker; latency/throughput/lag report + plots."""
    from descstream.config import load_settings

    from .loadgen import LoadgenConfig, run_loadgen
    from .traffic import parse_mix

    try:
        parse_mix(mix)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--mix") from None
    if rate < 0 or update_rate < 0 or duration <= 0 or products < 1 or users < 1:
        raise typer.BadParameter("products/users >= 1, duration > 0, rates >= 0")
    cfg = LoadgenConfig(
        products=products, users=users, rate=rate, duration=duration, seed=seed, mix=mix, update_rate=update_rate,
        out=out, warmup=warmup, drain=drain, group=group, drift_period_s=drift_period, progress=progress,
        command=_cmdline("loadgen"),
    )
    report = asyncio.run(run_loadgen(load_settings(), cfg))
    con = _console()
    lat = report["latency_s"]["steady"]
    ms = lambda x: "-" if x is None else f"{x * 1000:.0f} ms"  # noqa: E731
    con.print(
        f"[bold]loadgen done[/bold]: sent {report['sent']['total']} events, "
        f"{report['descriptions']['total']} descriptions written "
        f"({report['descriptions']['during_traffic']} during traffic); "
        f"latency p50 {ms(lat['p50'])} p95 {ms(lat['p95'])} p99 {ms(lat['p99'])}; "
        f"max lag {report['lag']['max']}"
    )
    con.print(f"report: {report['out']}/report.md")


@app.command("replay")
def replay(
    topic: str = typer.Option(..., help="products | user-behavior (or the configured topic names)"),
    from_: str = typer.Option(..., "--from", help="start: ISO time, unix seconds/ms, or relative (-15m, 2h, 1d)"),
    to: Optional[str] = typer.Option(None, help="end (exclusive), same formats; default: now"),
    rate: float = typer.Option(0.0, help="max messages read per second (0 = unlimited)"),
    group: Optional[str] = typer.Option(None, help="consumer group of the replay (default descstream-replay-<topic>-<ts>)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="plan only: read and classify, publish nothing"),
    wait: float = typer.Option(60.0, help="seconds to wait for the worker to write the regenerated descriptions"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Re-derive descriptions for the events of a time window, in the replay's own consumer group."""
    from descstream.config import load_settings

    from .replay import ReplayConfig, ReplayError, run_replay

    settings = load_settings()
    try:
        cfg = ReplayConfig.build(settings, topic=topic, start=from_, end=to, rate=rate, group=group,
                                 dry_run=dry_run, wait=wait, progress=progress)
        summary = asyncio.run(run_replay(settings, cfg))
    except ReplayError as exc:
        _console().print(f"[red]replay failed:[/red] {exc}")
        raise typer.Exit(2) from None
    _print_summary("replay", summary)


@app.command("backfill")
def backfill(
    model_version: str = typer.Option(..., help="regenerate every cached description not produced by this model version"),
    checkpoint: Optional[Path] = typer.Option(None, help="checkpoint file (default .descstream/backfill-<version>.json)"),
    batch: int = typer.Option(50, help="products per request batch"),
    rate: float = typer.Option(0.0, help="max products per second (0 = unlimited)"),
    hot_window: float = typer.Option(24.0, help="hours of behaviour used to rank products (hot first); 0 = by id"),
    wait: float = typer.Option(60.0, help="seconds to wait per batch for the worker to write"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list what would be regenerated, publish nothing"),
    restart: bool = typer.Option(False, help="ignore an existing checkpoint and start over"),
    limit: Optional[int] = typer.Option(None, min=1, help="stop after this many products (run again to resume)"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Regenerate stale-model descriptions, hot products first; resumable (checkpoint of processed products).

    The running workers must already generate with MODEL_VERSION: the generation agent skips a pair only
    when its stored text was produced by that version, and writes the new text in the Redis CAS's
    upgrade mode (same product version and event time, different model)."""
    from descstream.config import load_settings

    from .replay import BackfillConfig, ReplayError, run_backfill

    settings = load_settings()
    cfg = BackfillConfig(
        model_version=model_version, checkpoint=checkpoint, batch=batch, rate=rate, hot_window_h=hot_window,
        wait=wait, dry_run=dry_run, restart=restart, progress=progress, max_products=limit,
    )
    try:
        summary = asyncio.run(run_backfill(settings, cfg))
    except ReplayError as exc:
        _console().print(f"[red]backfill failed:[/red] {exc}")
        raise typer.Exit(2) from None
    _print_summary("backfill", summary)


def _print_summary(title: str, summary: dict) -> None:
    from rich.table import Table

    table = Table("", "count", title=title)
    for key, value in summary.items():
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            table.add_row(key, str(value))
    _console().print(table)


if __name__ == "__main__":  # pragma: no cover
    app()
