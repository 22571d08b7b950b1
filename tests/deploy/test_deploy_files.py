"""The deployment files can't be run here (no container engine), so what can be checked without
one is checked: every process is deployed with health checks, every setting they pass is one the
code reads (a typo would be silently ignored), and the services get the gateway's secret."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deploy.run_local import PROCESSES
from gateway.settings import GatewaySettings
from services.common.settings import ServiceSettings
from services.contacts.settings import ContactsSettings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
APPS = {p.name: p for p in PROCESSES}
# Read by name outside the settings classes: per-service URLs (load_settings, gateway/routes.py).
NAMED = {f"{p.name.upper()}_DATABASE_URL" for p in PROCESSES} | {f"{p.name.upper()}_URL" for p in PROCESSES}


def known_setting(name: str) -> bool:
    service_fields = {field.upper() for field in {**ServiceSettings.model_fields, **ContactsSettings.model_fields}}
    gateway_fields = {f"GATEWAY_{field.upper()}" for field in GatewaySettings.model_fields}
    return name in service_fields | gateway_fields | NAMED


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def manifests() -> list[dict]:
    return [doc for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_compose_runs_every_process_with_a_health_check_on_its_port(compose):
    services = compose["services"]
    for name, process in APPS.items():
        service = services[name]
        assert f"{process.package}.app:create_app" in service["command"]
        assert str(process.port) in service["command"]
        assert str(process.port) in " ".join(service["healthcheck"]["test"]), name
    assert services["kafka"]["image"].startswith("apache/kafka") and "healthcheck" in services["postgres"]
    assert "KAFKA_PROCESS_ROLES" in services["kafka"]["environment"]  # KRaft, no ZooKeeper


def test_compose_sets_only_settings_the_code_reads(compose):
    for name in APPS:
        environment = compose["services"][name]["environment"]
        unknown = [key for key in environment if not known_setting(key)]
        assert unknown == [], f"{name}: {unknown} are read by nothing"
        assert "GATEWAY_TOKEN" in environment, name
        assert name != "contacts" or "CONTACTS_SUPPRESSION_SECRET" in environment


def test_kubernetes_deploys_every_process_with_probes_and_the_gateway_secret(manifests):
    deployments = {doc["metadata"]["name"]: doc for doc in manifests if doc["kind"] == "Deployment"}
    assert set(APPS) <= set(deployments)
    configs = {doc["metadata"]["name"]: doc["data"] for doc in manifests if doc["kind"] == "ConfigMap"}
    for name in APPS:
        [container] = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert {"readinessProbe", "livenessProbe"} <= set(container), name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        env = {item["name"] for item in container.get("env", [])}
        assert "GATEWAY_TOKEN" in env, name
        assert name != "contacts" or "CONTACTS_SUPPRESSION_SECRET" in env
        for source in container.get("envFrom", []):
            unknown = [key for key in configs[source["configMapRef"]["name"]] if not known_setting(key)]
            assert unknown == [], f"{name}: {unknown} are read by nothing"
    scaled = {doc["spec"]["scaleTargetRef"]["name"] for doc in manifests if doc["kind"] == "HorizontalPodAutoscaler"}
    assert scaled >= {"orders", "interactions", "segmentation", "gateway"}
