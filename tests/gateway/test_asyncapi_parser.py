"""Every AsyncAPI document, each service's and the gateway's merged one, passes the official
parser (@asyncapi/parser, run with Node; skipped where Node is missing), and says what a Kafka
subscriber needs: the brokers, the topics, the key and the event schemas under components."""
from __future__ import annotations

import httpx
import pytest

from services.common.gateway_guard import GATEWAY_TOKEN_HEADER
from tests.asyncapi_parser import validate
from tests.conftest import TEST_GATEWAY_TOKEN
from tests.gateway.conftest import start_gateway


@pytest.fixture
async def documents(all_services, tmp_path) -> dict[str, dict]:
    found = {}
    for name, app in all_services.items():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s",
                                     headers={GATEWAY_TOKEN_HEADER: TEST_GATEWAY_TOKEN}) as client:
            found[name] = (await client.get("/asyncapi.json")).json()
    async with start_gateway(tmp_path, all_services) as gw:
        found["gateway"] = (await gw.client.get("/asyncapi.json")).json()
    return found


async def test_every_asyncapi_document_passes_the_official_parser(documents, tmp_path):
    assert validate(documents, tmp_path) == {name: [] for name in documents}


async def test_the_documents_name_brokers_topics_key_and_schemas(documents):
    merged = documents["gateway"]
    assert merged["x-missing-services"] == []
    assert {server["host"] for server in merged["servers"].values()} == {"127.0.0.1:1"}  # the tests' setting
    topics = {channel["bindings"]["kafka"]["topic"] for channel in merged["channels"].values()}
    assert topics == {"crm.contacts.v1", "crm.orders.v1", "crm.interactions.v1", "crm.segments.v1"}
    schemas = merged["components"]["schemas"]
    for message in merged["components"]["messages"].values():
        assert message["bindings"]["kafka"]["key"] == {"$ref": "#/components/schemas/EventKey"}
        assert message["headers"]["properties"]["content-type"]["const"] == "application/cloudevents+json"
        payload = schemas[message["payload"]["$ref"].rsplit("/", 1)[-1]]
        assert payload["properties"]["type"]["const"] == message["name"]
    assert sum(len(doc["components"]["messages"]) for name, doc in documents.items() if name != "gateway") \
        == len(merged["components"]["messages"])


async def test_the_parser_finds_what_the_documents_used_to_get_wrong(documents, tmp_path):
    """The check can fail: a ref into a nested `$defs`, as the documents had, is an invalid-ref error."""
    broken = documents["contacts"]
    payload = broken["components"]["schemas"]["crm_contact_created_v1"]
    payload["properties"]["data"]["properties"]["contact"] = {"$ref": "#/$defs/ContactPublic"}
    [diagnostic] = validate({"broken": broken}, tmp_path)["broken"]
    assert (diagnostic["severity"], diagnostic["code"]) == ("error", "invalid-ref")
