"""One dedicated stack (broker, Redis, Triton with tiny models) for the reliability tests.

Fault tests stop and restart its services, so it is never the shared session `stack` of other packages.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from descstream.stack import LocalStack

from .faults import reliability_stack


@pytest.fixture(scope="session")
def rel_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = reliability_stack(tmp_path_factory.mktemp("reliability"))
    stack.up()
    try:
        yield stack
    finally:
        stack.down()
