"""A Confluent-compatible schema registry for the tests: SCHEMA_REGISTRY_URL (scripts/test.sh starts one with
deploy/schema-registry/registry.sh), else a private one started from the application that script built."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.infra.broker import free_ports

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy/schema-registry/registry.sh"
API = "/apis/ccompat/v7"


def unavailable_reason() -> str | None:
    """Why no private registry can be started here (None: it can)."""
    found = re.search(r"^APICURIO_VERSION=(\S+)", SCRIPT.read_text(), re.MULTILINE)
    assert found is not None, f"{SCRIPT} names no APICURIO_VERSION"
    cache = Path(os.environ.get("MAILSTREAM_CACHE", Path.home() / ".cache/mailstream"))
    app = cache / f"apicurio-registry-{found[1]}" / "registry-runner.jar"
    if not app.is_file():
        return f"no schema registry built in {app.parent} (run: bash {SCRIPT.relative_to(ROOT)} fetch)"
    return None


@contextmanager
def private_registry(workdir: Path) -> Iterator[str]:
    """A registry of this session's own on a free port; its base URL for kafka.schema_registry.url."""
    [port] = free_ports(1)
    env = {**os.environ, "MAILSTREAM_RUN": str(workdir), "SCHEMA_REGISTRY_PORT": str(port)}
    subprocess.run(["bash", str(SCRIPT), "start"], env=env, check=True, timeout=180)
    try:
        yield f"http://127.0.0.1:{port}{API}"
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, check=False, timeout=60)
