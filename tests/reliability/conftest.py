"""One dedicated stack (broker, Redis, Triton with tiny models) for the reliability tests.

Fault tests stop and restart its services, so it is never the shared session `stack` of other packages.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from descstream.stack import LocalStack

from .faults import reliability_stack


@pytest.fixture(scope="session")
def rel_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = reliability_stack(tmp_path_factory.mktemp("reliability"))

    def _interrupt(_sig, _frame):  # a SIGTERM (e.g. a CI timeout) still tears the services down
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        stack.up()
        yield stack
    finally:
        stack.down()
        signal.signal(signal.SIGTERM, previous)
