"""Gateway fixtures: the four service apps in-process behind an AppsByHost transport, and a
gateway with its own key database and keys made for the test."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import pytest
import pytest_asyncio

from gateway import api_keys
from gateway.app import create_app
from gateway.settings import GatewaySettings
from services.common.audit import Caller
from tests.conftest import TEST_GATEWAY_TOKEN, running_app, service_settings
from tests.gateway.transports import AppsByHost

SERVICE_APPS = {
    "contacts": "services.contacts.app",
    "orders": "services.orders.app",
    "interactions": "services.interactions.app",
    "segmentation": "services.segmentation.app",
}
TEST_OPERATOR = Caller(key_id=None, key_name="the test's operator", request_id=None)
PORTS = {"contacts": 8001, "orders": 8002, "interactions": 8003, "segmentation": 8004}


def netloc(service: str) -> str:
    return f"{service}.internal:{PORTS[service]}"


@pytest.fixture(autouse=True)
def service_urls(monkeypatch):
    """Every upstream on a host only the AppsByHost transport knows: no real port is ever used."""
    for service in PORTS:
        monkeypatch.setenv(f"{service.upper()}_URL", f"http://{netloc(service)}")


def gateway_settings(tmp_path, **overrides) -> GatewaySettings:
    values = dict(database_url=f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}", log_requests=False,
                  cors_origins="", token=TEST_GATEWAY_TOKEN, consume_audit=False,
                  webhooks=False)
    values.update(overrides)
    return GatewaySettings(**values)


@dataclass
class Gateway:
    client: object  # httpx.AsyncClient on the gateway
    transport: AppsByHost
    keys: dict[str, str] = field(default_factory=dict)  # name -> secret

    @property
    def ctx(self):
        return self.client.app.state.gateway

    async def key(self, name: str, *scopes: str, **limits) -> str:
        created = await api_keys.create_key(engine=self.ctx.engine, name=name, scopes=list(scopes),
                                            caller=TEST_OPERATOR, **limits)
        self.keys[name] = created.secret
        return created.secret


@contextlib.asynccontextmanager
async def start_gateway(tmp_path, service_apps: dict[str, object], **overrides):
    transport = AppsByHost({netloc(name): app for name, app in service_apps.items()})
    async with running_app(create_app(gateway_settings(tmp_path, **overrides), transport=transport)) as client:
        yield Gateway(client, transport)


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@contextlib.asynccontextmanager
async def service_app(name: str, database_factory, **overrides):
    import importlib

    module = importlib.import_module(SERVICE_APPS[name])
    url = await database_factory.fresh(name)
    app = module.create_app(service_settings(name, url, **overrides))
    async with app.router.lifespan_context(app):
        yield app


@pytest_asyncio.fixture
async def all_services(database_factory):
    """{service: running app} for all four services, each on a fresh database."""
    async with contextlib.AsyncExitStack() as stack:
        apps = {name: await stack.enter_async_context(service_app(name, database_factory)) for name in SERVICE_APPS}
        yield apps
