"""Time to import N CSV rows (100,000 by default) through POST /v1/contacts/import.

Generates a CSV with Persian and Latin names, emails, Iranian mobile numbers (some in Persian
digits), tags, a city, an attribute and email consent, plus a few bad rows; starts the contacts
app in-process on a fresh, migrated SQLite database in a temp dir; streams the file through
httpx's ASGI transport; polls the job until it ends; prints rows/s and total seconds. It never
passes or fails.

    .venv/bin/python bench/bench_contacts_import.py [--rows 100000]

The figure includes everything an import does per row: validation and normalization, the
identity lookups, the contact, identity and facet rows, the consent history and one outbox
event per contact, in one transaction per 500 rows.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench._support import play_the_gateway  # noqa: E402
from services.common.migrate import upgrade  # noqa: E402
from services.common.settings import load_settings  # noqa: E402
from services.contacts.app import create_app  # noqa: E402

AS_GATEWAY = play_the_gateway()

GIVEN = ["محمد", "علی", "زهرا", "فاطمه", "مریم", "سارا", "آرش", "نرگس", "Sara", "Reza", "Kian", "Leila"]
FAMILY = ["احمدی", "محمدی", "کریمی", "رضایی", "موسوی", "Tehrani", "Karimi", "Ahmadi"]
CITIES = ["تهران", "شیراز", "اصفهان", "مشهد", "تبریز", "Karaj"]
PERSIAN_DIGITS = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
HEADER = "given_name,family_name,email,phone,tags,city,country,attribute.tier,consent.email\n"


def write_csv(path: Path, rows: int, seed: int = 7) -> int:
    """The file, written as it is generated; returns how many rows are deliberately bad."""
    rng, bad = random.Random(seed), 0
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("\ufeff" + HEADER)
        for i in range(rows):
            phone = f"0912{i:07d}"
            if i % 7 == 0:
                phone = phone.translate(PERSIAN_DIGITS)
            email = f"user{i}@example.com"
            if i % 1000 == 999:
                email, bad = "not-an-email", bad + 1
            out.write(f"{rng.choice(GIVEN)},{rng.choice(FAMILY)},{email},{phone},customer;{'vip' if i % 10 == 0 else 'new'},"
                      f"{rng.choice(CITIES)},IR,{rng.choice(['gold', 'silver', 'bronze'])},"
                      f"{'granted' if i % 3 else 'withdrawn'}\n")
    return bad


async def stream_file(path: Path, chunk_size: int = 1 << 16):
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            yield chunk


async def run(rows: int) -> None:
    with tempfile.TemporaryDirectory(prefix="crm-bench-import-") as tmp:
        workdir = Path(tmp)
        csv_path = workdir / "contacts.csv"
        started = time.perf_counter()
        bad = write_csv(csv_path, rows)
        print(f"generated {rows:,} rows ({csv_path.stat().st_size / 1e6:.1f} MB, {bad} bad) "
              f"in {time.perf_counter() - started:.1f} s")

        url = f"sqlite+aiosqlite:///{workdir / 'contacts.db'}"
        await asyncio.to_thread(upgrade, "contacts", url)
        settings = load_settings("contacts", database_url=url, run_background_tasks=False, log_requests=False,
                                 import_dir=str(workdir / "imports"))
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=60,
                                         headers=AS_GATEWAY) as client:
                started = time.perf_counter()
                response = await client.post("/v1/contacts/import", content=stream_file(csv_path),
                                             headers={"Content-Type": "text/csv"})
                response.raise_for_status()
                uploaded = time.perf_counter() - started
                job_url = response.json()["links"]["self"]
                last_report, last_rows = started, 0
                while True:
                    job = (await client.get(job_url)).json()
                    if job["status"] in ("completed", "failed"):
                        break
                    now, done = time.perf_counter(), job["progress"]["rows_processed"]
                    if now - last_report >= 15:  # shows whether the rate holds as the database grows
                        print(f"  {done:>9,} rows after {now - started:5.0f} s, "
                              f"{(done - last_rows) / (now - last_report):,.0f} rows/s lately", flush=True)
                        last_report, last_rows = now, done
                    await asyncio.sleep(0.25)
                total = time.perf_counter() - started

    print(f"job {job['status']}: {job['counts']}, {job['errors_total']} row errors"
          + (f", error: {job['error']}" if job["error"] else ""))
    print(f"upload (streamed to disk): {uploaded:.2f} s")
    print(f"import of {rows:,} rows: {total:.1f} s total, {rows / total:,.0f} rows/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="CSV rows to generate and import")
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one log line per poll
    asyncio.run(run(args.rows))


if __name__ == "__main__":
    main()
