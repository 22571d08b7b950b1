"""The gateway's settings, read from the environment (GATEWAY_* names)."""
from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", frozen=True)

    database_url: str = "sqlite+aiosqlite:///./var/gateway.db"
    # Upgrade the key database to the newest migration when the app starts (run_local does not
    # migrate the gateway); turn off where a deploy job runs `python -m gateway.migrate`.
    migrate_on_start: bool = True
    # "off" lets every request through as an anonymous admin: local development only.
    auth: bool = True
    key_cache_ttl_s: float = Field(default=5.0, ge=0)
    # Token bucket per key: the steady rate and the burst; a key's own record may override both.
    rate_per_second: float = Field(default=50.0, gt=0)
    rate_burst: int = Field(default=100, ge=1)
    # Comma-separated origins allowed to call from a browser ("*" for any); empty: no CORS.
    cors_origins: str = ""
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    connect_timeout_s: float = Field(default=2.0, gt=0)
    read_timeout_s: float = Field(default=30.0, gt=0)
    # Each part of the customer 360 view, and each service's API document, gets this long.
    part_timeout_s: float = Field(default=2.0, gt=0)
    log_requests: bool = True
    # Sent to the services in X-Gateway-Token; each service refuses requests without it when it is
    # started with the same GATEWAY_TOKEN (services/common/gateway_guard.py).
    token: str = ""

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]
