"""One running pipeline shared by the end-to-end scenarios (each uses its own recipients)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstream.devtools.capture_sink import CaptureSink
from tests.infra.stack import Stack, stack_config


@pytest.fixture(scope="session")
def sink() -> Iterator[CaptureSink]:
    s = CaptureSink().start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def stack(kafka_bootstrap: str, sink: CaptureSink, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("stack")
    s = Stack(stack_config(kafka_bootstrap, sink.address, workdir), workdir)
    try:
        s.start()
    except RuntimeError as exc:
        s.stop()
        pytest.fail(str(exc), pytrace=False)
    yield s
    s.stop()
