"""What an agent does with an error it does not handle: exit the worker process, never acknowledge.

Faust's default, when an agent body raises, is to log "Crashed reason=...", let the supervisor restart the
agent, and go on: but the `finally` of `Stream.take_events` (faust/streams.py) acknowledges the batch that
was in progress while the exception unwinds the generator, so its offsets are committed past results that
were never written (updates lost for good; and the restarted agent may never consume again). A graceful
stop (`app.crash`, `Worker.stop`) has the same problem: it closes the agent's stream, which runs that
`finally` and commits on the way out.

So the agents catch every exception of their loop body (`asyncio.CancelledError` is not an `Exception` and
still reaches Faust, which uses it for rebalances and shutdown) and call `crash_worker`: log the error
with its traceback, flush the log handlers, and `os._exit(EXIT_AGENT_CRASH)`. No Python cleanup runs, so
nothing acknowledges or commits the batch: the committed offsets stay at the last batch that completed
(Faust flushes the producer before every commit), and the process supervisor (systemd, Kubernetes, the
local stack's operator) restarts the worker, which re-consumes the batch (at-least-once; every sink is
idempotent). An exception that keeps recurring for the same input (a poison message that passed
validation) therefore crash-loops the worker visibly instead of silently skipping data.

Transient Redis errors never get here: `RedisStore` retries them in place until Redis is back.
Triton/embedder errors never get here either: the product agent degrades (no tag/embedding, logged and
counted), the generation agent publishes the faithful fallback and schedules a retry.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

from . import metrics

log = logging.getLogger(__name__)

EXIT_AGENT_CRASH = 70  # EX_SOFTWARE


def crash_worker(agent: str, exc: BaseException) -> NoReturn:
    """Log `exc`, flush, and exit the process at once with `EXIT_AGENT_CRASH` (see module docstring)."""
    try:
        metrics.AGENT_CRASHES.labels(agent=agent).inc()
        log.critical(
            "agent %s failed: %s: %s -- exiting with code %d WITHOUT acknowledging the batch in progress; "
            "it is redelivered when the worker restarts (at-least-once)",
            agent, type(exc).__name__, exc, EXIT_AGENT_CRASH, exc_info=exc,
        )
        for logger in (logging.getLogger(), *(logging.getLogger(n) for n in list(logging.root.manager.loggerDict))):
            for h in getattr(logger, "handlers", ()):
                try:
                    h.flush()
                except Exception:
                    pass
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(EXIT_AGENT_CRASH)
