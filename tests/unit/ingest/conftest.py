"""The ingest app in process (tests/infra/ingest_app.py), one per test, and an admin's client of it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.infra.ingest_app import IngestApp


@pytest.fixture
def ingest(tmp_path: Path) -> Iterator[IngestApp]:
    built = IngestApp.build(tmp_path / "status.sqlite3")
    yield built
    built.close()


@pytest.fixture
async def admin(ingest: IngestApp) -> AsyncIterator[httpx.AsyncClient]:
    async with ingest.client() as client:
        yield client
