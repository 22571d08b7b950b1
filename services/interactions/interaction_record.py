"""The interaction as a document: validating input, building the record, the ticket status
machine, re-attribution and erasure. Pure functions (no I/O), so every rule has a unit test.

Only a support ticket changes after it is recorded (status, assignee, notes); every other
interaction is a fact that happened, so changing one is a 409. Attribution and erasure are
not edits by a client: they are done by the service itself when contacts events arrive.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import ValidationError

from services.common.contact_points import InvalidContactPoint, normalize_phone, validated_email
from services.common.errors import Conflict, DomainError, InvalidInput, invalid_input_from

from .schemas import InteractionCreate, InteractionPublic, InteractionUpdate

# Where a type has a natural direction, it is the default; the others must say.
DEFAULT_DIRECTION = {
    "visit": "inbound", "page_view": "inbound", "click": "inbound", "download": "inbound",
    "social_mention": "inbound", "support_ticket": "inbound", "return_request": "inbound",
    "service_request": "inbound", "feedback": "inbound", "survey_response": "inbound",
    "campaign_sent": "outbound", "campaign_delivered": "outbound", "campaign_opened": "inbound",
    "campaign_clicked": "inbound", "campaign_converted": "inbound", "campaign_unsubscribed": "inbound",
    "campaign_bounced": "outbound",
}
# A rating (1-5) is what a customer gives: a survey, feedback, or the satisfaction score after
# a ticket, call or chat. NPS (0-10) is a survey question.
RATED_TYPES = frozenset({"survey_response", "feedback", "support_ticket", "call", "chat"})
NPS_TYPES = frozenset({"survey_response"})
TICKET = "support_ticket"
TICKET_TRANSITIONS = {
    "open": {"pending", "resolved", "closed"},
    "pending": {"open", "resolved", "closed"},
    "resolved": {"open", "closed"},  # a customer may come back: reopen
    "closed": set(),  # final: a new problem is a new ticket
}
# What an erasure removes: everything the customer said or that identifies them. What stays
# (type, kind, channel, direction, times, rating, nps, status, campaign, agent, duration,
# outcome) holds no personal data and keeps aggregates and campaign reports right.
ERASED_FIELDS = ("customer", "subject", "body", "notes", "url", "metadata")
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)


def identity_lock(key: tuple[str, str, str]) -> str:
    kind, system, value = key
    return f"{system if kind == 'external' else kind}:{value}"


def customer_lock(customer_id: str) -> str:
    return f"customer:{customer_id}"


@dataclass(frozen=True)
class Reference:
    """A customer reference, normalized: email validated (compared lower-cased), phone E.164."""

    customer_id: str | None = None
    email: str | None = None
    phone: str | None = None
    visitor_id: str | None = None

    @classmethod
    def of(cls, customer: dict[str, Any] | None) -> "Reference":
        customer = customer or {}
        return cls(customer.get("id"), customer.get("email"), customer.get("phone"), customer.get("visitor_id"))

    @property
    def email_key(self) -> str | None:
        return self.email.lower() if self.email else None

    def identity_keys(self) -> list[tuple[str, str, str]]:
        """Identity-map keys, in the order they decide who the customer is."""
        keys = [("email", "", self.email_key)] if self.email else []
        keys += [("phone", "", self.phone)] if self.phone else []
        keys += [("external", "visitor", self.visitor_id)] if self.visitor_id else []
        return keys

    def lock_keys(self) -> list[str]:
        """What a concurrent re-attribution of this reference would lock (attribution.py)."""
        keys = [customer_lock(self.customer_id)] if self.customer_id else []
        return keys + [identity_lock(key) for key in self.identity_keys()]

    def as_dict(self) -> dict[str, str]:
        return {name: value for name, value in (("id", self.customer_id), ("email", self.email),
                                                ("phone", self.phone), ("visitor_id", self.visitor_id)) if value}


@dataclass(frozen=True)
class Prepared:
    """One input validated and normalized, or the problem it has (a batch reports, never stops)."""

    index: int
    fields: InteractionCreate | None = None
    reference: Reference | None = None
    error: dict[str, Any] | None = None


def normalized_reference(fields: InteractionCreate, region: str) -> Reference:
    ref = fields.customer
    try:
        email = validated_email(ref.email) if ref.email else None
    except InvalidContactPoint as exc:
        raise InvalidInput.field(["customer", "email"], str(exc)) from None
    try:
        phone = normalize_phone(ref.phone, region) if ref.phone else None
    except InvalidContactPoint as exc:
        raise InvalidInput.field(["customer", "phone"], str(exc)) from None
    return Reference(ref.id, email, phone, ref.visitor_id)


def check_rules(fields: InteractionCreate, *, now: datetime, max_future_s: int) -> None:
    """The rules that tie fields together; raises InvalidInput naming the field."""
    if fields.occurred_at is not None:
        if fields.occurred_at > now + timedelta(seconds=max_future_s):
            raise InvalidInput.field("occurred_at", f"is in the future (more than {max_future_s} s after the "
                                     "server's clock); send the time it happened, with its timezone")
        if fields.occurred_at < EARLIEST:
            raise InvalidInput.field("occurred_at", "is before 1970; is the unit or the year wrong?")
    if fields.direction is None and fields.type not in DEFAULT_DIRECTION:
        raise InvalidInput.field("direction", f"is required for type {fields.type} (inbound or outbound)")
    if fields.type == "feedback" and fields.kind is None:
        raise InvalidInput.field("kind", "is required for feedback: comment, complaint or suggestion")
    if fields.type != "feedback" and fields.kind is not None:
        raise InvalidInput.field("kind", "is only for type feedback")
    if fields.status is not None and fields.type != TICKET:
        raise InvalidInput.field("status", "is only for type support_ticket")
    if fields.rating is not None and fields.type not in RATED_TYPES:
        raise InvalidInput.field("rating", f"is only for types {', '.join(sorted(RATED_TYPES))}")
    if fields.nps is not None and fields.type not in NPS_TYPES:
        raise InvalidInput.field("nps", "is only for type survey_response")


def prepare(index: int, raw: Any, *, region: str, now: datetime, max_future_s: int) -> Prepared:
    """Validate one raw item (a dict from JSON) as InteractionCreate plus the rules above."""
    if not isinstance(raw, (dict, InteractionCreate)):
        problem = InvalidInput("the item must be a JSON object (an interaction)",
                               errors=[{"field": "item", "loc": [], "message": "must be an object"}]).problem()
        return Prepared(index, error=problem)
    try:
        fields = raw if isinstance(raw, InteractionCreate) else InteractionCreate.model_validate(raw)
        check_rules(fields, now=now, max_future_s=max_future_s)
        return Prepared(index, fields, normalized_reference(fields, region))
    except ValidationError as exc:
        return Prepared(index, error=invalid_input_from(exc).problem())
    except DomainError as exc:
        return Prepared(index, error=exc.problem())


def new_interaction(fields: InteractionCreate, reference: Reference, *, interaction_id: str,
                    customer_id: str | None, now: datetime, merged_from: str | None = None) -> InteractionPublic:
    given = fields.model_dump(exclude_none=True)
    given["customer"] = reference.as_dict()
    given["metadata"] = dict(fields.metadata or {})  # an explicit null value is a value
    given["direction"] = fields.direction or DEFAULT_DIRECTION[fields.type]
    given["occurred_at"] = fields.occurred_at or now
    if fields.type == TICKET:
        given.setdefault("status", "open")
    return InteractionPublic(id=interaction_id, version=1, customer_id=customer_id, merged_from=merged_from,
                             created_at=now, updated_at=now, **given)


def apply_update(current: InteractionPublic, update: InteractionUpdate, *,
                 now: datetime) -> tuple[InteractionPublic, list[str]]:
    """A ticket's new version and the fields that changed; 409 for a fact or an impossible step."""
    if current.type != TICKET:
        raise Conflict(f"interaction {current.id} is a {current.type}, a recorded fact that does not change; "
                       "only support tickets can be updated", interaction_id=current.id,
                       interaction_type=current.type)
    changes = update.model_dump(exclude_unset=True)
    if changes.get("status", "") is None:
        raise InvalidInput.field("status", "cannot be null")
    status = changes.get("status", current.status)
    if status != current.status and status not in TICKET_TRANSITIONS.get(current.status or "open", set()):
        allowed = sorted(TICKET_TRANSITIONS.get(current.status or "open", set()))
        raise Conflict(f"ticket {current.id} is {current.status}; it can go to "
                       f"{', '.join(allowed) if allowed else 'no other status (closed is final)'}, not {status}",
                       current_status=current.status, allowed=allowed)
    changed = sorted(name for name, value in changes.items() if getattr(current, name) != value)
    if not changed:
        return current, []
    return current.model_copy(update={**changes, "version": current.version + 1, "updated_at": now}), changed


def reattributed(current: InteractionPublic, customer_id: str | None, *, merged_from: str | None,
                 now: datetime) -> tuple[InteractionPublic, list[str]]:
    updated = current.model_copy(update={"customer_id": customer_id, "merged_from": merged_from,
                                         "version": current.version + 1, "updated_at": now})
    changed = [name for name in ("customer_id", "merged_from") if getattr(current, name) != getattr(updated, name)]
    return updated, changed


def erased(current: InteractionPublic, *, now: datetime) -> tuple[InteractionPublic, list[str]]:
    """Right to be forgotten: the personal parts removed, the facts kept for aggregates."""
    cleared = {"customer": None, "subject": None, "body": None, "notes": None, "url": None, "metadata": {}}
    changed = [name for name in ERASED_FIELDS if getattr(current, name) not in (None, {})]
    updated = current.model_copy(update={**cleared, "erased": True, "version": current.version + 1,
                                         "updated_at": now})
    return updated, sorted(changed + ["erased"])
