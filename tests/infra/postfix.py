"""Locate Postfix's ``smtp-sink`` / ``smtp-source`` test programs (Debian package ``postfix``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def find_postfix_tool(name: str) -> Path | None:
    """Path of ``name`` ("smtp-sink", "smtp-source"), or None if not installed.

    Looks on PATH, then in /usr/sbin (often not on a non-root PATH), then in the
    wrappers scripts/bootstrap.sh writes when it had to unpack the .deb without root.
    """
    cache = os.environ.get("MAILSTREAM_CACHE") or str(Path.home() / ".cache" / "mailstream")
    found = shutil.which(name)
    candidates = [found] if found else []
    candidates += [f"/usr/sbin/{name}", f"{cache}/postfix/bin/{name}"]
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return Path(candidate)
    return None
