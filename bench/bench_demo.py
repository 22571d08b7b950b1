"""How long after `make demo`'s writes every segment is full.

The whole system runs for real (deploy/local_system.py: a dev broker on a free port, every
service and the gateway as processes, API keys on, SQLite files or --database-url PostgreSQL),
and the demo business (deploy/demo, the same seed and size as `make demo`) is posted through the
gateway. Then every segment's member count is read each --every seconds until the VIP segment
has every VIP and no count has moved for --quiet seconds. Printed: how long the writes took, and
for each segment when it reached its final count, counted from the end of the writes.

    .venv/bin/python bench/bench_demo.py [--customers 3000] [--seed 7] [--quiet 20] [--timeout 1200]
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench._support import measure_on_system  # noqa: E402
from deploy.demo.fill import fill  # noqa: E402
from deploy.demo.summary import VIP_SEGMENT  # noqa: E402


async def measure(system, key: str, args) -> None:
    async with httpx.AsyncClient(base_url=system.url("gateway"), headers={"Authorization": f"Bearer {key}"},
                                 timeout=httpx.Timeout(120, connect=5), trust_env=False) as client:
        started = time.monotonic()
        summary = await fill(client, customers=args.customers, seed=args.seed)
        writes_end = started + summary.posting_s
        print(f"demo: {args.customers:,} customers, seed {args.seed}; written in {summary.posting_s:.1f} s "
              f"({summary.requests} requests)", flush=True)
        counts: dict[str, int] = {}
        reached: dict[str, float] = {}  # segment -> when its count last moved
        while True:
            now = time.monotonic()
            for name, segment in summary.segments.items():
                count = (await client.get(f"/v1/segments/{segment['id']}")).json()["member_count"]
                if counts.get(name) != count:
                    counts[name], reached[name] = count, now
            vip_full = counts[VIP_SEGMENT] >= summary.expected_vip
            if vip_full and now - max(reached.values()) >= args.quiet:
                break
            if now - writes_end > args.timeout:
                print(f"gave up {args.timeout:.0f} s after the writes: {VIP_SEGMENT!r} has "
                      f"{counts[VIP_SEGMENT]} of {summary.expected_vip}")
                break
            await asyncio.sleep(args.every)
        for name in summary.segments:
            print(f"  {name}: {counts[name]:,} members, final {reached[name] - writes_end:+.1f} s after the writes")
        print(f"every segment full {max(reached.values()) - writes_end:.1f} s after the writes ended "
              f"(read every {args.every:g} s; 'full': no count moved for {args.quiet:g} s and "
              f"{VIP_SEGMENT!r} has all {summary.expected_vip} VIPs)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--every", type=float, default=0.5, help="seconds between readings of the counts")
    parser.add_argument("--quiet", type=float, default=20.0, help="seconds without a change that mean done")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds after the writes to give up")
    parser.add_argument("--database-url", default=None, help="a postgresql+asyncpg:// server URL")
    args = parser.parse_args()
    return measure_on_system(args.database_url, "bench-demo-", lambda system, key, _sampler: measure(system, key, args))

if __name__ == "__main__":
    sys.exit(main())
