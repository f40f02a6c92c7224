"""What the deployment files say, checked on what kustomize renders: the configuration every pod gets is valid
and binds where its probes look, each service has probes, requests, a disruption budget and a grace period
longer than its shutdown, production replicates 3 ways, the Strimzi topics are today's topics, and the compose
stack runs what scripts/stack.sh runs. Schemas are scripts/check_deploy.sh's part."""

from __future__ import annotations

import base64
import functools
import inspect
import os
import re
import subprocess
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailstream.config.model import Config, parse_config
from mailstream.events import strimzi
from mailstream.events.processor import TransactionalProcessor
from mailstream.events.topics import ALL_TOPICS
from mailstream.gateway.__main__ import SHUTDOWN_GRACE
from mailstream.ingest.app import MAX_WAIT_SECONDS

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = REPO / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUBERNETES / "overlays").iterdir() if p.is_dir())
SERVICES = ("ingest", "gateway", "scheduler", "delivery", "webhooks")
CONFIG_PATH = "/etc/mailstream/config.yaml"
DELIVERY_STOP = 10.0  # seconds the delivery worker takes at most from SIGTERM to exit (its stop limit)
WEBHOOK_TIMEOUT = 10.0  # seconds one POST may take unless an endpoint says otherwise (webhooks.endpoints[].timeout)
Resource = dict[str, Any]


def kustomize() -> str:
    version = (KUBERNETES / "kustomize.version").read_text().strip()
    cache = Path(os.environ.get("MAILSTREAM_CACHE", Path.home() / ".cache" / "mailstream"))
    binary = os.environ.get("KUSTOMIZE") or str(cache / "kustomize" / version / "kustomize")
    if not Path(binary).is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"no kustomize at {binary}: scripts/bootstrap.sh kustomize must install it under CI")
        pytest.skip(f"no kustomize at {binary} (scripts/bootstrap.sh kustomize)")
    return binary


@functools.cache
def _render(overlay: str, binary: str) -> tuple[Resource, ...]:
    out = subprocess.run(
        [binary, "build", str(KUBERNETES / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def render(overlay: str) -> tuple[Resource, ...]:
    return _render(overlay, kustomize())


def one(resources: tuple[Resource, ...], kind: str, name_prefix: str) -> Resource:
    found = [r for r in resources if r["kind"] == kind and r["metadata"]["name"].startswith(name_prefix)]
    assert len(found) == 1, f"{kind} {name_prefix}: {len(found)} found"
    return found[0]


def env_of(resources: tuple[Resource, ...], container: Resource) -> dict[str, str]:
    """The variables a container gets from its envFrom ConfigMaps and the Secrets the overlay generates."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef") or source.get("secretRef")
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        for r in resources:
            if r["kind"] == kind and r["metadata"]["name"] == ref["name"]:  # kustomize wrote the hashed name
                env.update(r.get("data", {}) if kind == "ConfigMap" else _decoded(r))
    return env


def _decoded(secret: Resource) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}


def pod_config(resources: tuple[Resource, ...], service: str) -> tuple[Config, Resource, Resource]:
    """The configuration the service's process loads in its pod, its pod spec and its container."""
    deployment = one(resources, "Deployment", f"mailstream-{service}")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    configmap = one(resources, "ConfigMap", "mailstream-config")
    data = yaml.safe_load(configmap["data"]["config.yaml"])
    return parse_config(data, env=env_of(resources, container)), pod, container


def health_address(config: Config, service: str) -> tuple[str, int]:
    return {
        "ingest": (config.ingest.host, config.ingest.port),
        "scheduler": (config.scheduler.web_host, config.scheduler.web_port),
        "delivery": (config.delivery.metrics_host, config.delivery.metrics_port),
        "gateway": (config.gateway.web_host, config.gateway.web_port),
        "webhooks": (config.webhooks.web_host, config.webhooks.web_port),
    }[service]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_each_pod_runs_its_service_with_the_mounted_file_and_is_probed_where_it_listens(
    overlay: str, service: str
) -> None:
    config, _, container = pod_config(render(overlay), service)
    assert container["args"] == [service, "--config", CONFIG_PATH]
    assert any(m["mountPath"] == CONFIG_PATH for m in container["volumeMounts"])
    host, port = health_address(config, service)
    assert not ip_address(host).is_loopback, "the kubelet probes the pod's address, not loopback"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        target = container[probe]["httpGet"]
        assert ports[target["port"]] == port, f"{probe} looks at {target['port']}, the service listens on {port}"
        assert target["path"] in ("/healthz", "/readyz", "/metrics")
    if service == "gateway":
        assert {x.port for x in config.gateway.listeners} <= set(ports.values())
    assert set(container["resources"]["requests"]) >= {"cpu", "memory"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_has_a_disruption_budget_and_ingest_and_delivery_an_autoscaler_within_the_partitions(
    overlay: str,
) -> None:
    resources = render(overlay)
    budgets = {
        r["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for r in resources
        if r["kind"] == "PodDisruptionBudget"
    }
    assert budgets == {f"mailstream-{s}" for s in SERVICES}
    partitions = int(one(resources, "ConfigMap", "mailstream-env")["data"]["MAILSTREAM_PARTITIONS"])
    scalers = {
        r["spec"]["scaleTargetRef"]["name"]: r["spec"] for r in resources if r["kind"] == "HorizontalPodAutoscaler"
    }
    assert set(scalers) == {"mailstream-ingest", "mailstream-delivery"}
    # A delivery worker beyond the partition count owns no egress path.
    assert scalers["mailstream-delivery"]["maxReplicas"] <= partitions


def _pre_stop(container: Resource) -> float:
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    return float(command[1]) if command[:1] == ["sleep"] else 0.0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grace_periods_outlast_each_services_shutdown(overlay: str) -> None:
    resources = render(overlay)
    txn_timeout = inspect.signature(TransactionalProcessor).parameters["transaction_timeout_ms"].default / 1000
    for service in SERVICES:
        config, pod, container = pod_config(resources, service)
        shutdown = {
            "ingest": MAX_WAIT_SECONDS,  # a status long poll in progress
            "gateway": SHUTDOWN_GRACE + config.gateway.cut_through_wait.total_seconds(),
            "scheduler": txn_timeout,  # the batch in progress commits or aborts
            "delivery": DELIVERY_STOP,
            "webhooks": max((e.timeout.total_seconds() for e in config.webhooks.endpoints), default=WEBHOOK_TIMEOUT),
        }[service]  # the POST in flight
        needed = _pre_stop(container) + shutdown
        assert pod["terminationGracePeriodSeconds"] > needed, f"{service}: {needed} s to stop"


def test_production_replicates_three_ways_and_small_keeps_the_single_broker_default() -> None:
    for overlay, factor, min_insync in (("production", 3, 2), ("strimzi", 3, 2), ("small", 1, 1)):
        for service in SERVICES:
            config, _, _ = pod_config(render(overlay), service)
            assert config.kafka.replication_factor == factor, (overlay, service)
            assert config.kafka.min_insync_replicas == min_insync, (overlay, service)


def test_strimzi_topics_are_the_declared_topics_with_the_deployments_partitions_and_production_replication() -> None:
    resources = render("strimzi")
    partitions = int(one(resources, "ConfigMap", "mailstream-env")["data"]["MAILSTREAM_PARTITIONS"])
    committed = (KUBERNETES / "overlays" / "strimzi" / "topics.yaml").read_text()
    assert committed == strimzi.render(cluster="mailstream", partitions=partitions), (
        f"stale: python -m mailstream.events.strimzi --partitions {partitions} > "
        "deploy/kubernetes/overlays/strimzi/topics.yaml"
    )
    kafka = one(resources, "Kafka", "mailstream")
    topics = [r for r in resources if r["kind"] == "KafkaTopic"]
    assert sorted(t["spec"]["topicName"] for t in topics) == sorted(s.name for s in ALL_TOPICS)
    for topic in topics:
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert topic["spec"]["partitions"] == partitions
        assert topic["spec"]["replicas"] == 3
        assert topic["spec"]["config"]["min.insync.replicas"] == "2"
    settings = kafka["spec"]["kafka"]["config"]
    assert settings["default.replication.factor"] == 3
    assert settings["min.insync.replicas"] == 2
    assert settings["transaction.state.log.min.isr"] == 2
    pools = [r for r in resources if r["kind"] == "KafkaNodePool"]
    assert sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"]) >= 3
    config, _, _ = pod_config(resources, "scheduler")
    assert config.kafka.bootstrap_servers.startswith(f"{kafka['metadata']['name']}-kafka-bootstrap:")


def test_compose_runs_the_stack_of_scripts_stack_sh_with_its_config() -> None:
    compose = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
    stack_sh = (REPO / "scripts" / "stack.sh").read_text()
    assert "config=${1:-deploy/config/local.yaml}" in stack_sh
    local = parse_config(yaml.safe_load((REPO / "deploy" / "config" / "local.yaml").read_text()), env={})
    services = compose["services"]
    assert set(services) == {"kafka", "tls", "capture-sink", *SERVICES}
    (started,) = re.findall(r"^for service in ([a-z ]+); do", stack_sh, re.MULTILINE)
    assert set(started.split()) == set(SERVICES), "compose and scripts/stack.sh run different services"
    for service in SERVICES:
        spec = services[service]
        assert spec["command"] == [service, "--config", CONFIG_PATH]
        assert f"./config/local.yaml:{CONFIG_PATH}:ro" in spec["volumes"]
        assert spec["network_mode"] == "host"  # local.yaml's loopback addresses mean the host's
    sink = services["capture-sink"]["command"]
    assert sink[sink.index("--listen") + 1] == local.delivery.smarthost
    listeners = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert listeners == f"PLAINTEXT://{local.kafka.bootstrap_servers}"
    grace = float(services["gateway"]["stop_grace_period"].removesuffix("s"))
    assert grace > SHUTDOWN_GRACE + local.gateway.cut_through_wait.total_seconds()


def test_every_alert_names_metrics_the_services_export() -> None:
    rules = yaml.safe_load((REPO / "deploy" / "prometheus" / "mailstream.rules.yaml").read_text())
    source = "\n".join(p.read_text() for p in (REPO / "services").rglob("*.py"))
    exported = set(re.findall(r"\"(mailstream_[a-z_]+)\"", source))
    for rule in rules["groups"][0]["rules"]:
        assert rule["labels"]["severity"] in ("page", "ticket")
        assert rule["annotations"]["summary"]
        for name in re.findall(r"\bmailstream_[a-z_]+", rule["expr"]):
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            assert base in exported or base.removesuffix("_total") in exported, f"{rule['alert']}: no metric {name}"


def test_strimzi_pods_reach_the_tls_listener_as_the_kafka_user_with_its_secret_mounted() -> None:
    resources = render("strimzi")
    kafka = one(resources, "Kafka", "mailstream")
    (tls,) = [lis for lis in kafka["spec"]["kafka"]["listeners"] if lis["tls"]]
    user = one(resources, "KafkaUser", "mailstream")
    assert tls["authentication"]["type"] == user["spec"]["authentication"]["type"] == "scram-sha-512"
    for service in SERVICES:
        config, pod, container = pod_config(resources, service)
        section = config.kafka
        assert config.kafka.bootstrap_servers == f"mailstream-kafka-bootstrap:{tls['port']}", service
        assert (section.security_protocol, section.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512"), service
        assert section.sasl_username == user["metadata"]["name"]
        secrets = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
        mounts = {m["name"]: Path(m["mountPath"]) for m in container["volumeMounts"]}
        files = {  # each file the settings name, as the mounted Secret provides it
            mounts[name] / item["path"]: (secret["secretName"], item["key"])
            for name, secret in secrets.items()
            for item in secret.get("items", [])
        }
        assert files[section.sasl_password_file] == (user["metadata"]["name"], "password"), service
        assert files[section.ssl_ca_location] == (f"{kafka['metadata']['name']}-cluster-ca-cert", "ca.crt"), service
