"""API keys from the command line, on the database named by GATEWAY_DATABASE_URL:

    python -m gateway.keys create --name shop --scopes orders:write [--rate 20 --burst 40]
    python -m gateway.keys list
    python -m gateway.keys revoke <id>

`create` prints the secret key once; only its hash is stored. A running gateway notices a
revocation within GATEWAY_KEY_CACHE_TTL_S (5 s by default). The audit trail names the change's
maker as "command line (<os user>@<host>)".
"""
from __future__ import annotations

import argparse
import asyncio
import getpass
import socket
import sys

from services.common.audit import Caller
from services.common.database import create_engine

from . import api_keys, migrate
from .scopes import KNOWN_SCOPES, UnknownScope
from .settings import GatewaySettings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gateway.keys", description="Manage the gateway's API keys.")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key and print its secret once")
    create.add_argument("--name", required=True)
    create.add_argument("--scopes", required=True,
                        help=f"comma- or space-separated; any of: {', '.join(sorted(KNOWN_SCOPES))}")
    create.add_argument("--rate", type=float, help="requests per second (default: GATEWAY_RATE_PER_SECOND)")
    create.add_argument("--burst", type=int, help="bucket size (default: GATEWAY_RATE_BURST)")
    commands.add_parser("list", help="list keys (never their secrets)")
    revoke = commands.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("id")
    return parser


def command_line_caller() -> Caller:
    return Caller(key_id=None, key_name=f"command line ({getpass.getuser()}@{socket.gethostname()})"[:200],
                  request_id=None)


async def _run(args: argparse.Namespace, url: str) -> int:
    engine = create_engine(url)
    try:
        if args.command == "create":
            scopes = args.scopes.replace(",", " ").split()
            created = await api_keys.create_key(engine=engine, name=args.name, scopes=scopes,
                                                caller=command_line_caller(), rate_per_second=args.rate,
                                                rate_burst=args.burst)
            record = created.record
            print(f"created key {record.id} ({record.name}; scopes {' '.join(record.scopes)})")
            print("the secret, shown only this once:")
            print(f"  {created.secret}")
        elif args.command == "list":
            print(f"{'id':36}  {'prefix':8}  {'state':7}  {'name':20}  scopes")
            for key in await api_keys.list_keys(engine=engine):
                state = "revoked" if key.revoked else "active"
                print(f"{key.id:36}  {key.prefix:8}  {state:7}  {key.name[:20]:20}  {' '.join(key.scopes)}")
        else:
            record = await api_keys.revoke_key(engine=engine, key_id=args.id, caller=command_line_caller())
            print(f"revoked key {record.id} ({record.name}) at {record.revoked_at.isoformat()}")
        return 0
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = GatewaySettings()
    migrate.upgrade(settings.database_url)  # a fresh checkout has no key database yet
    try:
        return asyncio.run(_run(args, settings.database_url))
    except (UnknownScope, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except api_keys.KeyNotFound:
        print(f"error: no API key {args.id}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
