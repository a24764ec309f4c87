"""The `descstream` command. Each concern package contributes its own sub-commands; this file only mounts them.

    descstream stack up|status|down|logs   embedded broker + Redis + Triton (descstream.stack)
    descstream demo                        the whole path on the embedded stack (descstream.demo)
    descstream worker | serve-reader       stream processing and the recommender's reader (streams)
    descstream train | eval | export | generate   the model side (models)
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.table import Table

from descstream.config import Settings

app = typer.Typer(help="Streaming, audience-aware product descriptions.", no_args_is_help=True, add_completion=False)
stack_app = typer.Typer(help="The embedded local stack: Kafka-compatible broker, Redis, Triton.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
console = Console(width=None if sys.stdout.isatty() else 160)


def _stack():
    from descstream.stack import LocalStack

    return LocalStack(Settings())


@stack_app.command("up")
def stack_up() -> None:
    """Start the services not already reachable at the configured addresses and wait until healthy."""
    from descstream.stack import StackError

    try:
        states = _stack().up(progress=lambda m: console.print(f"[dim]{m}[/dim]"))
    except StackError as exc:
        console.print(f"[red]stack up failed:[/red] {exc}")
        raise typer.Exit(1) from None
    _print_states(states)


@stack_app.command("status")
def stack_status() -> None:
    """Each service, its address, PID and health. Exit code 1 if any is unhealthy."""
    states = _stack().status()
    _print_states(states)
    if not all(s.healthy for s in states):
        raise typer.Exit(1)


@stack_app.command("down")
def stack_down() -> None:
    """Stop exactly the processes `stack up` started (SIGTERM, then SIGKILL after the grace period)."""
    stopped = _stack().down()
    console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing (no service was started by descstream)'}")


@stack_app.command("logs")
def stack_logs(service: str = typer.Argument(..., help="kafka | redis | triton"), lines: int = 50) -> None:
    """The tail of one service's log file."""
    sys.stdout.write(_stack().logs(service, lines) + "\n")


def _print_states(states) -> None:
    table = Table("service", "address", "pid", "healthy", "log", "detail")
    for s in states:
        table.add_row(
            s.name, s.address, str(s.pid or "-"), "[green]yes[/green]" if s.healthy else "[red]no[/red]", s.log or "-", s.detail
        )
    console.print(table)


@app.command("demo")
def demo(
    products: int = typer.Option(3, help="synthetic products to publish"),
    users: int = typer.Option(4, help="synthetic shoppers"),
    timeout: float = typer.Option(900.0, help="seconds to wait for every description"),
) -> None:
    """Run the whole path on the embedded stack and print descriptions read back from Redis."""
    from descstream.demo import main

    main(products, users, timeout)


topics_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")


@topics_app.command("create")
def topics_create() -> None:
    """Create the descstream topics that are missing (partitions from DESCSTREAM_TOPICS__PARTITIONS)."""
    from streams.cli import create_topics

    missing = create_topics(Settings())
    console.print("created: " + (", ".join(missing) if missing else "nothing (all exist)"))


@app.command("bench")
def bench(
    out_dir: str = typer.Option("bench/results", help="where the JSON results go"),
    only: str = typer.Option("serving,streams,verifier", help="comma-separated: serving, streams, verifier"),
) -> None:
    """Run the benchmarks (`make bench`): each writes JSON with the machine described."""
    import subprocess

    modules = {"serving": "serving.bench", "streams": "streams.bench", "verifier": "models.verifier.bench"}
    failures = 0
    for name in [x.strip() for x in only.split(",") if x.strip()]:
        if name not in modules:
            console.print(f"[red]error:[/red] unknown bench {name!r}; known: {', '.join(modules)}")
            raise typer.Exit(2)
        cmd = [sys.executable, "-m", modules[name], "--out", f"{out_dir}/{name}.json"]
        console.print(f"[bold]bench {name}[/bold]: {' '.join(cmd)}")
        failures += subprocess.call(cmd) != 0
    raise typer.Exit(1 if failures else 0)


@app.command("config")
def show_config() -> None:
    """Print the effective configuration (secrets masked)."""
    import json

    sys.stdout.write(json.dumps(Settings().redacted(), indent=2) + "\n")


def _mount() -> None:
    """Sub-commands owned by the concern packages (their heavy imports happen inside the commands)."""
    from models import cli as models_cli
    from streams import cli as streams_cli
    from streams import ops_cli

    models_cli.register(app)
    app.command("worker")(streams_cli.worker)
    app.command("serve-reader")(streams_cli.serve_reader)
    app.command("loadgen")(ops_cli.loadgen)
    app.command("replay")(ops_cli.replay)
    app.command("backfill")(ops_cli.backfill)


_mount()

if __name__ == "__main__":  # pragma: no cover
    app()
