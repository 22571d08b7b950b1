"""The contacts service's own CPU per `POST /v1/contacts`, in-process, without client or relay.

The contacts app (its lifespan, background tasks off: no relay, no consumer, no broker needed)
on a fresh migrated database, request logs on. Alternating blocks of `--block` creates of each:

- **request**: the whole ASGI app called directly (no HTTP client or server: the scope, the
  body and the answer are handed over in memory), so its middleware, routing, validation, the
  use case and the response are counted and nothing else;
- **use case**: `contact_commands.create_contact` alone, on a body parsed beforehand.

Prints the median (and every block) of this process's CPU per create for each, over `--rounds`
rounds, after `--warmup` creates of each. The bodies are bench_contacts_api's.

    .venv/bin/python bench/bench_contact_create.py [--rounds 6] [--block 300] [--database-url ...]
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from bench._support import on_fresh_database, play_the_gateway  # noqa: E402
from bench.bench_contacts_api import contact_body  # noqa: E402

GATEWAY_HEADERS = play_the_gateway()
from services.common.settings import load_settings  # noqa: E402


def asgi_post(app, path: str, body: bytes):
    """One request through the app in memory; its status."""
    headers = [(name.lower().encode(), value.encode()) for name, value in GATEWAY_HEADERS.items()]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [*headers, (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8001)}
    delivered, statuses = False, []

    async def receive():
        nonlocal delivered
        if delivered:
            await asyncio.Event().wait()  # the client never disconnects
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def run() -> int:
        await app(scope, receive, send)
        return statuses[0]
    return run()


async def measure(args, url: str, kind: str) -> None:
    from services.contacts import contact_commands
    from services.contacts.app import create_app
    from services.contacts.schemas import ContactCreate

    app = create_app(load_settings("contacts", database_url=url, kafka_bootstrap_servers="127.0.0.1:1",
                                   run_background_tasks=False, log_requests=True))
    logging.getLogger("crm.access").setLevel(logging.WARNING)  # the line is built, not printed
    rng, run, numbers = random.Random(args.seed), uuid.uuid4().hex[:8], iter(range(10**9))

    async with app.router.lifespan_context(app):
        ctx = app.state.ctx

        async def request() -> None:
            status = await asgi_post(app, "/v1/contacts", orjson.dumps(contact_body(next(numbers), run, rng)))
            if status != 201:
                raise SystemExit(f"POST /v1/contacts answered {status}")

        async def use_case() -> None:
            fields = ContactCreate.model_validate(contact_body(next(numbers), run, rng))
            await contact_commands.create_contact(ctx, fields)

        phases = {"request": request, "use case": use_case}
        for create in phases.values():
            for _ in range(args.warmup):
                await create()
        blocks: dict[str, list[float]] = {name: [] for name in phases}
        for _ in range(args.rounds):
            for name, create in phases.items():
                started = time.process_time()
                for _ in range(args.block):
                    await create()
                blocks[name].append((time.process_time() - started) / args.block * 1000)
    print(f"contacts on {kind}: CPU per create, {args.rounds} alternating blocks of {args.block}")
    for name, values in blocks.items():
        print(f"  {name:9} median {statistics.median(values):.3f} ms  ({', '.join(f'{v:.3f}' for v in values)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--block", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--database-url", default=None, help="a postgresql+asyncpg:// server URL")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    on_fresh_database(args.database_url, "contacts", "bench-contact-create-",
                      lambda url, kind: measure(args, url, kind))
    return 0


if __name__ == "__main__":
    sys.exit(main())
