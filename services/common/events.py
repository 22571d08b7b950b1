"""The CloudEvents 1.0 envelope every service publishes (DESIGN.md, "Events").

`data` carries the full current state of the aggregate; `sequence` is the aggregate's version,
so a subscriber can drop anything older than what it already applied.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import orjson

SPECVERSION = "1.0"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def topic_for(service: str) -> str:
    return f"crm.{service}.v1"


def dead_letter_topic(topic: str) -> str:
    return f"{topic}.dlq"


def build_event(*, service: str, event_type: str, subject: str, sequence: int, data: dict[str, Any],
                time: datetime | None = None, aggregate_id: str | None = None) -> dict[str, Any]:
    """An envelope such as type `crm.contact.updated.v1` from service `contacts`.

    `subject` is the customer id (the Kafka key). `sequence` is the version of the aggregate
    named by the extension `aggregateid`: the customer itself for contacts, an order for orders.
    """
    return {
        "specversion": SPECVERSION,
        "id": str(uuid.uuid4()),
        "source": f"/crm/{service}",
        "type": event_type,
        "subject": subject,
        "time": rfc3339(time or utcnow()),
        "datacontenttype": "application/json",
        "sequence": sequence,
        "aggregateid": aggregate_id or subject,
        "data": data,
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")  # money stays an exact decimal string
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode(event: dict[str, Any]) -> bytes:
    """The event as JSON. Aware UTC times become RFC 3339 with "Z" (as rfc3339 writes them),
    dates ISO 8601, Decimals decimal strings, so a projection can stage its records as they are."""
    return orjson.dumps(event, default=_json_default, option=orjson.OPT_UTC_Z)


class MalformedEvent(ValueError):
    pass


REQUIRED_FIELDS = ("specversion", "id", "source", "type", "subject", "time", "data", "sequence")


def decode(raw: bytes | None) -> dict[str, Any]:
    """Parse and check an envelope; anything else is a poison message."""
    if raw is None:
        raise MalformedEvent("empty message")
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedEvent(f"not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise MalformedEvent("envelope is not a JSON object")
    missing = [name for name in REQUIRED_FIELDS if name not in event]
    if missing:
        raise MalformedEvent(f"envelope lacks {', '.join(missing)}")
    if event["specversion"] != SPECVERSION:
        raise MalformedEvent(f"unsupported specversion {event['specversion']!r}")
    if not isinstance(event["sequence"], int) or not isinstance(event["data"], dict):
        raise MalformedEvent("sequence must be an integer and data an object")
    event.setdefault("aggregateid", event["subject"])
    # They key the consumers' memory (processed_events, consumer_positions), stored as text.
    if not (isinstance(event["id"], str) and isinstance(event["subject"], str)
            and isinstance(event["aggregateid"], (str, type(None)))):
        raise MalformedEvent("id, subject and aggregateid must be strings")
    return event
