"""Event types with their JSON Schemas, and the AsyncAPI document built from them, so that
other systems can subscribe without reading the code (DESIGN.md, "Events")."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
BOOTSTRAP_NOTE = (
    "Bootstrapping a new subscriber: start your consumer group at the current end of {topic} (or at its "
    "beginning, to get the history too), then ask the operator to run `python -m services.common.snapshots "
    "{service}` (`make snapshots SERVICE={service}`). The service then publishes on {topic}, in order with its "
    "live events, a snapshot event ({types}) of the current state of each aggregate it holds. Apply each like "
    "an update, by `sequence` per `aggregateid`: skip it when you already hold that version or a newer one.")


@dataclass(frozen=True)
class EventType:
    type: str  # crm.contact.created.v1
    topic: str  # crm.contacts.v1
    source: str  # /crm/contacts
    summary: str
    data_model: type[BaseModel]


def envelope_schema(event: EventType) -> dict[str, Any]:
    """The CloudEvents envelope of one event type, with its `data` schema inlined."""
    data = event.data_model.model_json_schema(ref_template="#/$defs/{model}", mode="serialization")
    defs = data.pop("$defs", {})
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"urn:crm:event:{event.type}",
        "title": event.type,
        "description": event.summary,
        "type": "object",
        "required": ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "sequence",
                     "aggregateid", "data"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "format": "uuid"},
            "source": {"const": event.source},
            "type": {"const": event.type},
            "subject": {"type": "string", "description": "The customer id; also the Kafka message key"},
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {"const": "application/json"},
            "sequence": {"type": "integer", "minimum": 1,
                         "description": "The version of the aggregate named by aggregateid: +1 per change; "
                                        "skip an event whose sequence is not above the last you applied for it"},
            "aggregateid": {"type": "string", "description": "The aggregate `sequence` counts: the customer for "
                                                             "contacts events, the order for orders events"},
            "data": data,
        },
        "$defs": defs,
    }


def is_snapshot(event_type: str) -> bool:
    """crm.contact.snapshot.v1, crm.segment.member_snapshot.v1: current state re-published
    (services/common/snapshots.py), not a change."""
    return event_type.split(".")[2].endswith("snapshot")


def bootstrap_note(topic: str, events: list[EventType]) -> str:
    """How to bootstrap from a topic's snapshot events; empty when the topic has none."""
    types = [event.type for event in events if is_snapshot(event.type)]
    if not types:
        return ""
    return BOOTSTRAP_NOTE.format(topic=topic, service=events[0].source.rsplit("/", 1)[-1], types=", ".join(types))


def asyncapi_document(*, title: str, description: str, events: list[EventType],
                      servers: dict[str, Any] | None = None) -> dict[str, Any]:
    """An AsyncAPI 3.0 document: one channel per topic, one message per event type."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for event in events:
        name = event.type.replace(".", "_")
        messages[name] = {
            "name": event.type, "title": event.type, "summary": event.summary,
            "contentType": "application/cloudevents+json",
            "headers": {"type": "object", "description": "Kafka key: the customer id (`subject`)"},
            "payload": envelope_schema(event),
        }
        channel = channels.setdefault(event.topic.replace(".", "_"), {
            "address": event.topic, "messages": {},
            "description": f"Events of {event.source}; keyed by customer id so one customer's events stay in order.",
        })
        channel["messages"][name] = {"$ref": f"#/components/messages/{name}"}
    for channel in channels.values():  # the how-to on the channel survives the gateway's merged document
        note = bootstrap_note(channel["address"], [e for e in events if e.topic == channel["address"]])
        if note:
            channel["description"] += " " + note
            description = f"{description}\n\n{note}"
    for channel_name, channel in channels.items():
        operations[f"receive_{channel_name}"] = {
            "action": "receive", "channel": {"$ref": f"#/channels/{channel_name}"},
            "messages": [{"$ref": f"#/channels/{channel_name}/messages/{m}"} for m in channel["messages"]],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": title, "version": "1.0.0", "description": description},
        "servers": servers or {"development": {"host": "127.0.0.1:9092", "protocol": "kafka"}},
        "defaultContentType": "application/cloudevents+json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }
