"""Event types with their JSON Schemas, and the AsyncAPI document built from them, so that
other systems can subscribe without reading the code (DESIGN.md, "Events")."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from .settings import ServiceSettings

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


ASYNCAPI_VERSION = "3.1.0"
SCHEMAS_REF = "#/components/schemas/"
KAFKA_BINDING_VERSION = "0.5.0"
DEV_BOOTSTRAP = "127.0.0.1:9092"


def component_name(event_type: str) -> str:
    """crm.contact.created.v1 -> crm_contact_created_v1 (the message's and its payload's name)."""
    return event_type.replace(".", "_")


def _refs_to_components(node: Any) -> Any:
    """`#/$defs/X` (pydantic's refs, local to one event's schema) -> `#/components/schemas/X`."""
    if isinstance(node, dict):
        return {key: (SCHEMAS_REF + value[len("#/$defs/"):] if key == "$ref" and isinstance(value, str)
                      and value.startswith("#/$defs/") else _refs_to_components(value))
                for key, value in node.items()}
    if isinstance(node, list):
        return [_refs_to_components(item) for item in node]
    return node


def kafka_servers(bootstrap_servers: str) -> dict[str, Any]:
    """One AsyncAPI server per bootstrap broker (an AsyncAPI server names one host)."""
    hosts = [host.strip() for host in bootstrap_servers.split(",") if host.strip()] or [DEV_BOOTSTRAP]
    return {("kafka" if len(hosts) == 1 else f"kafka-{index}"): {
        "host": host, "protocol": "kafka", "protocolVersion": "3.0",
        "description": "A broker of the cluster (KAFKA_BOOTSTRAP_SERVERS); no authentication is configured here"}
        for index, host in enumerate(hosts, start=1)}


def asyncapi_document(*, title: str, description: str, events: list[EventType],
                      settings: ServiceSettings | None = None) -> dict[str, Any]:
    """An AsyncAPI 3.1 document: one channel per topic, one message per event type, the event
    schemas under `components.schemas`, Kafka bindings for the key. With the service's `settings`,
    its brokers are the servers and channel addresses carry its KAFKA_TOPIC_PREFIX (the real topic
    names); without, the development broker."""
    bootstrap_servers = settings.kafka_bootstrap_servers if settings else DEV_BOOTSTRAP
    topic_prefix = settings.kafka_topic_prefix if settings else ""
    partitions = settings.kafka_topic_partitions if settings else None
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {"EventKey": {
        "type": "string", "format": "uuid",
        "description": "The Kafka record key: the event's `subject`, the customer id, so one customer's events "
                       "stay in order on one partition (an order or interaction not yet attributed to a customer "
                       "uses its own id)"}}
    for event in events:
        name = component_name(event.type)
        envelope = envelope_schema(event)
        for def_name, definition in envelope.pop("$defs").items():
            schemas.setdefault(def_name, _refs_to_components(definition))
        del envelope["$schema"], envelope["$id"]  # an $id would re-base every $ref inside it
        schemas[name] = _refs_to_components(envelope)
        messages[name] = {
            "name": event.type, "title": event.type, "summary": event.summary,
            "contentType": "application/cloudevents+json",
            "headers": {"type": "object", "properties": {"content-type": {
                "const": "application/cloudevents+json",
                "description": "CloudEvents Kafka binding, structured mode: the record value is the whole event"}}},
            "payload": {"$ref": SCHEMAS_REF + name},
            "bindings": {"kafka": {"key": {"$ref": SCHEMAS_REF + "EventKey"},
                                   "bindingVersion": KAFKA_BINDING_VERSION}},
        }
        address = topic_prefix + event.topic
        channel = channels.setdefault(component_name(event.topic), {
            "address": address, "messages": {},
            "description": f"Events of {event.source}; keyed by customer id so one customer's events stay in order. "
                           f"Poison messages a consumer of this system cannot apply go to {address}.dlq.",
            "bindings": {"kafka": {"topic": address, **({"partitions": partitions} if partitions else {}),
                                   "bindingVersion": KAFKA_BINDING_VERSION}},
        })
        channel["messages"][name] = {"$ref": f"#/components/messages/{name}"}
    for channel in channels.values():  # the how-to on the channel survives the gateway's merged document
        topic = channel["address"][len(topic_prefix):]
        note = bootstrap_note(topic, [e for e in events if e.topic == topic])
        if note:
            channel["description"] += " " + note
            description = f"{description}\n\n{note}"
    for channel_name, channel in channels.items():
        operations[f"receive_{channel_name}"] = {
            "action": "receive", "channel": {"$ref": f"#/channels/{channel_name}"},
            "summary": f"Subscribe to {channel['address']}",
            "messages": [{"$ref": f"#/channels/{channel_name}/messages/{m}"} for m in channel["messages"]],
        }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": title, "version": "1.0.0", "description": description},
        "servers": kafka_servers(bootstrap_servers),
        "defaultContentType": "application/cloudevents+json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
