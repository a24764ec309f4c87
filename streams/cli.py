"""Command line of the stream workers: `worker`, `serve-reader`, and `create_topics(settings)`.

Mount on the main CLI with::

    from streams.cli import worker, serve_reader
    app.command("worker")(worker)
    app.command("serve-reader")(serve_reader)

or as a sub-app: ``app.add_typer(streams.cli.app, name="streams")``.
Also runnable directly: ``python -m streams.cli worker --generator fake``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Optional

import typer

from descstream.config import Settings, load_settings

app = typer.Typer(help="descstream stream workers and the description reader", no_args_is_help=True)


async def create_topics_async(settings: Settings) -> list[str]:
    """Create the descstream topics that are missing; returns their names."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    t = settings.topics
    names = [t.products, t.behavior, t.descriptions, t.dead_letter, t.generation_requests]
    admin = AIOKafkaAdminClient(**settings.kafka.aiokafka_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(n, num_partitions=t.partitions, replication_factor=t.replication_factor) for n in missing]
                )
            except TopicAlreadyExistsError:
                pass
        return missing
    finally:
        await admin.close()


def create_topics(settings: Settings) -> list[str]:
    """Create the descstream topics that are missing (partitions from `Settings.topics`); returns them."""
    return asyncio.run(create_topics_async(settings))


async def ensure_redis_layout_async(settings: Settings) -> int:
    """Prune data written by older versions so the reader can take its one-lookup path
    (`RedisStore.ensure_layout`; a no-op once done)."""
    from .redis_store import RedisStore

    store = RedisStore.from_settings(settings)
    try:
        return await store.ensure_layout()
    finally:
        await store.close()


def limit_blas_threads(n: int) -> None:
    """Cap the BLAS pool of this process at `n` threads (`WorkerSettings.blas_threads`, 1 by default).

    A worker is one event loop: its numpy work (scoring rounds) is small, and OpenBLAS' idle threads
    busy-wait after every call, taking CPU from the loop. numpy is imported first so that threadpoolctl
    finds its BLAS library; the limit holds for the life of the process."""
    import numpy  # noqa: F401 - loads the BLAS library threadpoolctl acts on
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n, user_api="blas")


def run_worker(
    settings: Settings,
    *,
    generator: str = "triton",
    web_port: Optional[int] = None,
    metrics_port: Optional[int] = None,
    data_dir: Optional[str] = None,
    agents: tuple[str, ...] = ("products", "behavior", "generation"),
    loglevel: str = "warning",
) -> None:
    import faust

    from . import metrics
    from .app import create_app

    limit_blas_threads(settings.worker.blas_threads)
    create_topics(settings)
    asyncio.run(ensure_redis_layout_async(settings))
    faust_app = create_app(settings, generator=generator, web_port=web_port, data_dir=data_dir, agents=agents)
    mport = settings.worker.metrics_port if metrics_port is None else metrics_port
    metrics.serve(mport, settings.worker.metrics_host)
    worker = faust.Worker(faust_app, loglevel=loglevel, quiet=True)
    # Faust's progress spinner sets the root logger to DEBUG (handlers filter later), so every debug()
    # call in aiokafka/faust builds a LogRecord: ~4 per event on the behaviour path. No spinner, no cost.
    worker.spinner = None
    prof_out = os.environ.get("DESCSTREAM_STREAMS_CPROFILE")  # diagnostics: cProfile dump at exit
    if prof_out:
        import atexit
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
        atexit.register(lambda: (prof.disable(), prof.dump_stats(f"{prof_out}.{os.getpid()}")))
    sys.argv = sys.argv[:1]
    worker.execute_from_commandline()


@app.command("worker")
def worker(
    generator: str = typer.Option("triton", help="triton (production) or fake (deterministic, no Triton)"),
    web_port: Optional[int] = typer.Option(None, help="Faust web port (default WorkerSettings.web_port)"),
    metrics_port: Optional[int] = typer.Option(None, help="Prometheus port (default WorkerSettings.metrics_port; 0 = off)"),
    data_dir: Optional[str] = typer.Option(None, help="table data directory (default WorkerSettings.data_dir)"),
    agents: str = typer.Option("products,behavior,generation", help="comma-separated agents to run"),
    loglevel: str = typer.Option("warning"),
) -> None:
    """Run a Faust stream worker (creates missing topics first)."""
    logging.basicConfig(level=loglevel.upper())
    run_worker(
        load_settings(), generator=generator, web_port=web_port, metrics_port=metrics_port, data_dir=data_dir,
        agents=tuple(a.strip() for a in agents.split(",") if a.strip()), loglevel=loglevel,
    )


@app.command("serve-reader")
def serve_reader(
    host: Optional[str] = typer.Option(None, help="bind address (default ReaderSettings.host, 127.0.0.1)"),
    port: Optional[int] = typer.Option(None, help="port (default ReaderSettings.port)"),
) -> None:
    """Serve GET /descriptions?user=u-1&products=p-1,p-2 from Redis."""
    from .reader import run_reader

    run_reader(load_settings(), host=host, port=port)


@app.command("create-topics")
def create_topics_cmd() -> None:
    """Create the descstream topics if missing."""
    missing = create_topics(load_settings())
    typer.echo("created: " + (", ".join(missing) if missing else "nothing (all exist)"))


if __name__ == "__main__":
    app()
