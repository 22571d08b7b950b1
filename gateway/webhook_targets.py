"""Where a webhook may be sent: an http(s) URL, and, unless private targets are allowed, only to
public addresses (SSRF: a subscriber must not be able to make the gateway call the services,
the database or a cloud metadata endpoint on the internal network and read the log of answers).

The address is checked twice: when the subscription is made or changed (a literal private IP or
`localhost` is refused at once, with a message) and before every delivery, on the addresses the
host name resolves to then (a name may point elsewhere later). A name that changes its answer
between that check and httpx's own look-up (DNS rebinding) is not caught here: where that matters,
send webhooks through an egress proxy or a network policy that allows only the internet
(docs/webhooks.md, "Private addresses").
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from urllib.parse import urlsplit

SCHEMES = ("http", "https")
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


class TargetRefused(ValueError):
    """The URL is not one the gateway will call; the message says why, for a person."""


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL, trimmed, or TargetRefused: not http(s), no host, credentials in it, or (unless
    `allow_private`) a host that is itself a private address or a local name."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"not a valid URL: {exc}") from None
    if parts.scheme.lower() not in SCHEMES:
        raise TargetRefused("must be an http:// or https:// URL")
    host = (parts.hostname or "").lower()
    if not host:
        raise TargetRefused("must name a host")
    if parts.username or parts.password:
        raise TargetRefused("must not carry a user name or password; authenticate the webhook by its signature")
    if port == 0:
        raise TargetRefused("port 0 is not a port")
    if not allow_private:
        if host in LOCAL_NAMES or host.endswith(".localhost"):
            raise TargetRefused(f"{host} is this machine; private targets are not allowed "
                                "(GATEWAY_WEBHOOKS_ALLOW_PRIVATE_TARGETS)")
        address = _literal_address(host)
        if address is not None and not address.is_global:
            raise TargetRefused(f"{host} is a private or reserved address; private targets are not allowed "
                                "(GATEWAY_WEBHOOKS_ALLOW_PRIVATE_TARGETS)")
    return url


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


# Subscribers' host names are looked up on threads of their own. On the event loop's resolver
# (uvloop: libuv's four threads) a name server that does not answer holds a thread for seconds,
# and a few deliveries to such names stalled every connection the gateway opened to the services
# meanwhile: aiohttp's connect asks the same resolver even for 127.0.0.1 (the API contract run
# saw the gateway answer 504 that way).
RESOLVER_THREADS = 8
_resolver = ThreadPoolExecutor(max_workers=RESOLVER_THREADS, thread_name_prefix="webhook-dns")


async def check_resolved(url: str, *, allow_private: bool) -> None:
    """Before a delivery: TargetRefused when the host does not resolve, or (unless
    `allow_private`) resolves to any non-public address. Looked up here even when private
    targets are allowed, so that a name that does not resolve fails on these threads, not in
    httpx's own look-up on the event loop's resolver."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().run_in_executor(
            _resolver, partial(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM))
    except socket.gaierror as exc:
        raise TargetRefused(f"{host} does not resolve: {exc}") from None
    if allow_private:
        return
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise TargetRefused(f"{host} resolves to {address}, a private or reserved address")
