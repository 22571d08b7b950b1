"""The snapshot command's wiring and its documentation: every service's snapshot module stages
events its catalog lists, on its own topic, and every AsyncAPI document (each service's and the
gateway's merged one) says how a new subscriber bootstraps."""
from __future__ import annotations

import pytest

from gateway.api_docs import merge_asyncapi
from services.common.event_catalog import asyncapi_document, is_snapshot
from services.common.snapshots import SNAPSHOT_MODULES, main, snapshots_of
from services.contacts.event_schemas import CONTACT_EVENTS
from services.interactions.event_schemas import INTERACTION_EVENTS
from services.orders.event_schemas import ORDER_EVENTS
from services.segmentation.event_schemas import EVENTS as SEGMENTATION_EVENTS

CATALOGS = {"contacts": CONTACT_EVENTS, "orders": ORDER_EVENTS, "interactions": INTERACTION_EVENTS,
            "segmentation": SEGMENTATION_EVENTS}
SNAPSHOT_TYPES = {"contacts": ["crm.contact.snapshot.v1"], "orders": ["crm.order.snapshot.v1"],
                  "interactions": ["crm.interaction.snapshot.v1"],
                  "segmentation": ["crm.profile.snapshot.v1", "crm.segment.member_snapshot.v1"]}


def test_every_service_has_snapshots_on_its_own_topic():
    assert set(SNAPSHOT_MODULES) == set(CATALOGS)
    for service, catalog in CATALOGS.items():
        snapshots = snapshots_of(service)
        assert {event.topic for event in catalog} == {snapshots.topic}
        assert [event.type for event in catalog if is_snapshot(event.type)] == SNAPSHOT_TYPES[service]
        assert snapshots.sources, service


def test_asyncapi_documents_say_how_to_bootstrap():
    documents = {service: asyncapi_document(title=service, description="Events.", events=catalog)
                 for service, catalog in CATALOGS.items()}
    for service, document in documents.items():
        [channel] = document["channels"].values()
        for text in (document["info"]["description"], channel["description"]):
            assert "Bootstrapping a new subscriber" in text
            assert f"python -m services.common.snapshots {service}" in text
            assert all(event_type in text for event_type in SNAPSHOT_TYPES[service])
    merged = merge_asyncapi(documents, [])
    assert all("Bootstrapping a new subscriber" in channel["description"] for channel in merged["channels"].values())
    assert len(merged["channels"]) == 4


def test_a_topic_without_snapshot_events_gets_no_bootstrap_note():
    plain = [event for event in ORDER_EVENTS if not is_snapshot(event.type)]
    document = asyncapi_document(title="orders", description="Events.", events=plain)
    assert document["info"]["description"] == "Events."
    assert "Bootstrapping" not in document["channels"]["crm_orders_v1"]["description"]


@pytest.mark.parametrize("argv", [["billing"], ["contacts", "--batch-size", "0"], []])
def test_the_command_refuses_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert "usage: python -m services.common.snapshots" in capsys.readouterr().err
