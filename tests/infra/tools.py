"""The real clients the end-to-end tests drive (swaks, Postfix), and what a test does when one is missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest


def every_part_required() -> bool:
    """Under CI (or MAILSTREAM_REQUIRE_BROKER=1) a missing part fails the test: a CI run that skipped the tests
    of real clients must not pass. tests/conftest.py applies the same rule to the broker and smtp-sink."""
    return os.environ.get("CI") == "true" or os.environ.get("MAILSTREAM_REQUIRE_BROKER") == "1"


def missing(reason: str) -> NoReturn:
    if every_part_required():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def find_swaks() -> Path | None:
    """swaks on PATH, or the wrapper scripts/bootstrap.sh writes when it unpacked the .deb without root."""
    cache = os.environ.get("MAILSTREAM_CACHE") or str(Path.home() / ".cache" / "mailstream")
    for candidate in (shutil.which("swaks"), f"{cache}/swaks/bin/swaks"):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None
