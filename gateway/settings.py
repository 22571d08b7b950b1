"""The gateway's settings, read from the environment (GATEWAY_* names)."""
from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.settings import ENVIRONMENT_FIELD, Environment, InsecureSettings, check_secret


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", frozen=True, populate_by_name=True)

    environment: Environment = ENVIRONMENT_FIELD  # CRM_ENVIRONMENT, shared with the services
    database_url: str = "sqlite+aiosqlite:///./var/gateway.db"
    # Upgrade the key database to the newest migration when the app starts (run_local does not
    # migrate the gateway); turn off where a deploy job runs `python -m gateway.migrate`.
    migrate_on_start: bool = True
    # "off" lets every request through as an anonymous admin: refused unless CRM_ENVIRONMENT=development.
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
    # Follow crm.audit.v1 into the audit store (gateway_consumer.py), with the KAFKA_* settings the
    # services read; off in tests that hand the store its entries themselves.
    consume_audit: bool = True
    # Outbound webhooks (docs/webhooks.md): run the consumer that queues deliveries and the sender;
    # off in tests that drive them themselves.
    webhooks: bool = True
    # Deliver to private, loopback and link-local addresses (SSRF, gateway/webhook_targets.py).
    # Unset: allowed with CRM_ENVIRONMENT=development only.
    webhooks_allow_private_targets: bool | None = None
    webhooks_timeout_s: float = Field(default=10.0, gt=0)
    # A failing delivery is retried this long after its first attempt, then given up.
    webhooks_retry_window_s: float = Field(default=24 * 3600.0, gt=0)
    # A subscription with failures and no success for this long is disabled.
    webhooks_disable_after_s: float = Field(default=24 * 3600.0, gt=0)
    # Delivered and failed deliveries stay in the log this long.
    webhooks_log_retention_days: float = Field(default=30.0, gt=0)
    # Sent to the services in X-Gateway-Token; each service, started with the same GATEWAY_TOKEN,
    # refuses requests without it (services/common/gateway_guard.py).
    token: str = ""

    @property
    def webhooks_private_targets(self) -> bool:
        if self.webhooks_allow_private_targets is None:
            return self.environment == "development"
        return self.webhooks_allow_private_targets

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    def check_serving(self) -> None:
        """Raises InsecureSettings where the gateway would serve open: keys off outside
        development, or a token that is empty or a placeholder. (Only serving needs these: the
        key CLI and the migrations run without them.)"""
        if not self.auth and self.environment != "development":
            raise InsecureSettings("GATEWAY_AUTH=off lets anyone in as an admin; it is accepted only with "
                                   "CRM_ENVIRONMENT=development")
        check_secret("GATEWAY_TOKEN", self.token, self.environment)
