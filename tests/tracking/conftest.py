"""The gateway's fixtures (services in-process behind it) for the tracking API's tests."""
from tests.gateway.conftest import all_services, service_urls  # noqa: F401 (fixtures)
