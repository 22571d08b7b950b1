"""Settings shared by every service, read from the environment.

Each service reads its database URL from `<NAME>_DATABASE_URL` (DESIGN.md), so one shell can
configure every service at once; everything else is common to all services.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# CRM_ENVIRONMENT: production unless a developer says otherwise, so a forgotten setting fails
# safe. Only "development" accepts placeholder secrets (and, at the gateway, GATEWAY_AUTH=off).
Environment = Literal["production", "development"]
ENVIRONMENT_FIELD = Field(default="production", validation_alias=AliasChoices("crm_environment"))
MIN_SECRET_LENGTH = 16
# Words of the placeholders that deployment templates and tutorials carry ("CHANGE_ME", ...).
PLACEHOLDER_WORDS = ("changeme", "change_me", "replace_me", "your_secret", "your_token", "example")


class InsecureSettings(ValueError):
    """A process refuses to serve with a secret anyone could guess."""


def check_secret(name: str, value: str, environment: Environment) -> None:
    """Refuse an empty secret always, and a placeholder or short one outside development."""
    hint = f"set {name} to a long random value, e.g. $(openssl rand -hex 32)"
    if not value:
        raise InsecureSettings(f"{name} is not set: {hint}")
    folded = value.lower().replace("-", "_")
    weak = len(value) < MIN_SECRET_LENGTH or len(set(value)) < 4 or any(w in folded for w in PLACEHOLDER_WORDS)
    if weak and environment != "development":
        raise InsecureSettings(f"{name} looks like a placeholder (shorter than {MIN_SECRET_LENGTH} characters, a "
                               f"template word such as CHANGE_ME, or too few distinct characters): {hint} "
                               "(CRM_ENVIRONMENT=development accepts it)")


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True, populate_by_name=True)

    environment: Environment = ENVIRONMENT_FIELD
    service_name: str = "service"
    database_url: str = ""
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # Tansu answers a fetch only when its max wait runs out (DESIGN.md), so a consumer's wait
    # adapts (services/common/consumer.py FetchWait), so a backlog drains at once, flowing events
    # wait a bounded few milliseconds, and an idle consumer costs next to nothing.
    # Three waits: draining a backlog (a poll came back full), events flowing (some arrived in the
    # last poll), and the longest a quiet consumer waits: a quarter of the quiet time, up to this.
    # Idle, a fetch every 5 s per process; the first event after 20 s or more of quiet waits up to
    # 5 s per hop (1 s after 4 s of quiet).
    kafka_fetch_max_wait_ms: int = Field(default=10, ge=1, le=5000)
    kafka_fetch_flow_wait_ms: int = Field(default=100, ge=1, le=5000)
    kafka_fetch_idle_wait_ms: int = Field(default=5000, ge=1, le=30_000)
    # Consumers commit their offsets at most this often while events flow (at once when the topics
    # go quiet): a restart re-delivers at most this long's events, skipped as duplicates. 0: every poll.
    kafka_commit_interval_ms: int = Field(default=1000, ge=0, le=60_000)
    # Tansu completes a group join only after about half of this, so tests use a short one.
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1000)
    kafka_topic_partitions: int = Field(default=6, ge=1)
    # Prefixes every topic name: lets tests (or tenants sharing a cluster) keep topics apart.
    kafka_topic_prefix: str = ""
    # Relay: how long it may sleep with nothing to do; commits in this process wake it at once, so
    # the poll only finds rows committed by other processes (another replica, a CLI). The idle
    # interval applies once nothing was published for a while: an idle relay costs next to nothing.
    outbox_poll_interval_s: float = Field(default=0.5, gt=0)
    outbox_idle_poll_interval_s: float = Field(default=2.0, gt=0)
    outbox_batch_size: int = Field(default=500, ge=1, le=10_000)
    outbox_max_backoff_s: float = Field(default=5.0, gt=0)
    default_phone_region: str = "IR"
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    idempotency_ttl_hours: int = Field(default=48, ge=24)
    # A key claimed by a request that never finished (its process was killed) is free again after
    # this long; above the gateway's read timeout, so a request still running is never doubled.
    idempotency_lease_s: float = Field(default=60.0, gt=0)
    import_dir: str = "./var/imports"
    log_requests: bool = True
    # The secret the gateway sends in X-Gateway-Token (the same GATEWAY_TOKEN the gateway reads);
    # a service refuses every request without it (services/common/gateway_guard.py), and refuses
    # to start without it.
    gateway_token: str = ""
    # Off in tests, which drive the relay and consumers explicitly.
    run_background_tasks: bool = True

    @field_validator("default_phone_region")
    @classmethod
    def _region_upper(cls, value: str) -> str:
        import phonenumbers

        region = value.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown phone region {value!r}")
        return region


SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


def load_settings(service_name: str, **overrides) -> ServiceSettings:
    """Settings for one service; `<NAME>_DATABASE_URL` wins over the SQLite default."""
    env_url = os.environ.get(f"{service_name.upper()}_DATABASE_URL")
    default_url = f"sqlite+aiosqlite:///{Path('var') / (service_name + '.db')}"
    values = {"service_name": service_name, "database_url": env_url or default_url}
    values.update(overrides)
    return ServiceSettings(**values)


def extended_settings(cls: type[SettingsT], service_name: str, settings: ServiceSettings | None = None,
                      **overrides) -> SettingsT:
    """A service's own settings class from plain ServiceSettings (what load_settings and the shared
    test helpers build): their values are kept, the service's own fields come from the
    environment unless `overrides` set them."""
    if isinstance(settings, cls) and not overrides:
        return settings
    base = settings if settings is not None else load_settings(service_name)
    values = {name: getattr(base, name) for name in ServiceSettings.model_fields}
    if isinstance(base, cls):
        values.update({name: getattr(base, name) for name in cls.model_fields})
    values.update(overrides)
    return cls(**values)
