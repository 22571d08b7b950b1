"""Prometheus metrics of one service process, in a registry of its own (no global state, so
several apps can live in one test process)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ServiceMetrics:
    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"service": service}
        r = self.registry
        self.http_requests = Counter("crm_http_requests_total", "HTTP requests answered",
                                     ["method", "route", "status"], registry=r)
        self.http_latency = Histogram("crm_http_request_seconds", "HTTP request latency",
                                      ["method", "route"], buckets=LATENCY_BUCKETS, registry=r)
        self.outbox_pending = Gauge("crm_outbox_pending_events", "Outbox events not yet published",
                                    registry=r)
        self.outbox_oldest_age = Gauge("crm_outbox_oldest_pending_age_seconds",
                                       "Age of the oldest unpublished outbox event", registry=r)
        self.outbox_published = Counter("crm_outbox_published_total", "Outbox events published", registry=r)
        self.outbox_failures = Counter("crm_outbox_publish_failures_total", "Failed publish attempts", registry=r)
        self.outbox_broker_losses = Counter("crm_outbox_broker_losses_total",
                                            "Times the broker no longer held what it had acknowledged, so the "
                                            "relay re-sent the retained outbox", registry=r)
        self.outbox_delay = Histogram("crm_outbox_commit_to_publish_seconds",
                                      "Delay from an event's commit to its broker acknowledgement",
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.events_consumed = Counter("crm_events_consumed_total", "Events applied by consumers",
                                       ["consumer", "outcome"], registry=r)
        self.service_info = Gauge("crm_service_info", "Constant 1, labelled with the service",
                                  list(labels), registry=r)
        self.service_info.labels(**labels).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
