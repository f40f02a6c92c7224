"""One running pipeline shared by the end-to-end scenarios (each uses its own recipients)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mailstream.devtools.capture_sink import CaptureSink
from tests.infra.stack import Stack, running_stack


@pytest.fixture(scope="session")
def sink() -> Iterator[CaptureSink]:
    s = CaptureSink().start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def stack(kafka_bootstrap: str, sink: CaptureSink, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(kafka_bootstrap, sink.address, tmp_path_factory.mktemp("stack")) as s:
        yield s
