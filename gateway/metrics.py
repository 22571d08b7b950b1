"""The gateway's metrics: the services' request metrics plus what only a gateway has."""
from __future__ import annotations

from prometheus_client import Counter

from services.common.metrics import ServiceMetrics


class GatewayMetrics(ServiceMetrics):
    def __init__(self) -> None:
        super().__init__("gateway")
        r = self.registry
        self.upstream_requests = Counter("crm_gateway_upstream_requests_total",
                                         "Requests forwarded to a service, by outcome",
                                         ["service", "outcome"], registry=r)
        self.refusals = Counter("crm_gateway_refusals_total",
                                "Requests the gateway refused itself (401, 403, 429)", ["reason"], registry=r)
        self.key_lookups = Counter("crm_gateway_key_lookups_total",
                                   "API key lookups that read the database (cache misses)", registry=r)
        self.audit_entries = Counter("crm_gateway_audit_entries_total",
                                     "Services' audit entries consumed from crm.audit.v1, by outcome",
                                     ["outcome"], registry=r)
        self.webhook_deliveries = Counter("crm_gateway_webhook_deliveries_total",
                                          "Outbound webhook delivery attempts, by outcome (delivered, retrying, "
                                          "failed, queued)", ["outcome"], registry=r)
