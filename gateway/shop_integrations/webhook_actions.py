"""What a mapped webhook asks of the services that own the data, and the refusal of a payload
that cannot be mapped. The mappings (shopify_mapping, woocommerce_mapping) make these; the
intake (webhook_intake) carries them out through the services' own APIs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class PayloadRejected(Exception):
    """A signed payload that does not add up or lacks what the mapping needs: dead-lettered."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class PostOrder:
    """POST /v1/orders: creates the order or updates the one of the same (platform, external_id)."""

    order: dict[str, Any]


@dataclass(frozen=True)
class RecordRefund:
    """POST /v1/orders/{id}/refunds on the order (platform, external_id)."""

    platform: str
    external_id: str
    refund: dict[str, Any]


@dataclass(frozen=True)
class UpsertContact:
    """POST /v1/contacts/batch with this one contact (matched by email, phone or external id)."""

    contact: dict[str, Any]


@dataclass(frozen=True)
class NothingToDo:
    reason: str


Action = PostOrder | RecordRefund | UpsertContact | NothingToDo
