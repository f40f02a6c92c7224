"""Each ingest replica owns its status view's file: a second process opening it is refused, naming the key,
instead of sharing it (where a stopped replica, holding SQLite's write lock, stalls the other's view). The lock
goes with the owner however it ends, SIGKILL included."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailstream.events import fixtures
from mailstream.ingest.status_view import StatusStore, ViewInUse

HOLD = (
    "import sys, time; from pathlib import Path; from mailstream.ingest.status_view import StatusStore; "
    "store = StatusStore(Path(sys.argv[1])); print('open', flush=True); time.sleep(60)"
)


def _holder(db: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(db)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "open\n"
    return proc


def test_a_second_process_is_refused_until_the_owner_is_gone(tmp_path: Path) -> None:
    db = tmp_path / "status.sqlite3"
    owner = _holder(db)
    try:
        with pytest.raises(ViewInUse, match=r"ingest\.status_db .* held by another process"):
            StatusStore(db)
        owner.send_signal(signal.SIGSTOP)  # a stopped owner still owns it
        with pytest.raises(ViewInUse):
            StatusStore(db)
    finally:
        owner.kill()
        owner.wait()
        assert owner.stdout is not None
        owner.stdout.close()
    deadline = time.monotonic() + 5
    while True:  # the kernel drops the lock with the killed process
        try:
            store = StatusStore(db)
            break
        except ViewInUse:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    store.apply([(0, 0, fixtures.status())])
    store.close()
    StatusStore(db).close()  # and a closed store lets the next one in
