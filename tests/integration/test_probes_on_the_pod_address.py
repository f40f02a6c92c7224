"""In a pod the kubelet probes `/healthz` at the pod's address, not loopback: with the health address 0.0.0.0
(deploy/kubernetes/base/config.yaml sets it; here from the environment), each worker answers at another address,
and a SIGTERM ends it within the grace period its Deployment gives it (idle here: the worst cases are summed in
tests/unit/test_deploy_manifests.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from tests.infra.stack import free_port

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
# The address a probe comes to: another loopback address, which a server bound to 127.0.0.1 alone refuses.
POD_ADDRESS = "127.0.0.2"


def grace_period(service: str) -> int:
    docs = yaml.safe_load_all((REPO / "deploy" / "kubernetes" / "base" / f"{service}.yaml").read_text())
    (deployment,) = (d for d in docs if d["kind"] == "Deployment")
    return int(deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])


def configuration(service: str, port: int) -> tuple[dict[str, object], str]:
    """The file (ports, unique groups) and the variable that sets the health address, as in the manifests."""
    run = uuid.uuid4().hex[:8]
    if service == "scheduler":
        return {"scheduler": {"app_id": f"probe-{run}", "web_port": port}}, "MAILSTREAM_SCHEDULER__WEB_HOST"
    if service == "delivery":
        return {"delivery": {"group_id": f"probe-{run}", "metrics_port": port}}, "MAILSTREAM_DELIVERY__METRICS_HOST"
    if service == "webhooks":
        return {"webhooks": {"app_id": f"probe-{run}", "web_port": port}}, "MAILSTREAM_WEBHOOKS__WEB_HOST"
    listener = {"name": "ingress", "host": "127.0.0.1", "port": free_port({port}), "mode": "ingress"}
    return {
        "gateway": {"app_id": f"probe-{run}", "web_port": port, "hostname": "gw.test", "listeners": [listener]}
    }, "MAILSTREAM_GATEWAY__WEB_HOST"


@pytest.mark.parametrize("service", ["scheduler", "delivery", "gateway", "webhooks"])
def test_health_answers_on_the_pod_address_and_sigterm_ends_the_service_in_its_grace_period(
    service: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    port = free_port()
    data, variable = configuration(service, port)
    data["kafka"] = {"bootstrap_servers": kafka_bootstrap}
    config = tmp_path / "mailstream.yaml"
    config.write_text(yaml.safe_dump(data))
    env = {**os.environ, variable: "0.0.0.0"}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    with (tmp_path / "service.log").open("wb") as log:
        # The image's command: the `mailstream` entry point with the service's name.
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("mailstream")), service, "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
    try:
        deadline, status = time.monotonic() + 90, None
        while status != 200 and time.monotonic() < deadline and proc.poll() is None:
            try:
                status = httpx.get(f"http://{POD_ADDRESS}:{port}/healthz", timeout=2).status_code
            except httpx.TransportError:
                time.sleep(0.3)
        assert status == 200, (tmp_path / "service.log").read_text()[-3000:]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=grace_period(service)) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
