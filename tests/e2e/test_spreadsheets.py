"""A team brings its customers in from Excel and takes orders out to a spreadsheet, through the
gateway of the running system (every process real, API keys on)."""
from __future__ import annotations

import csv
import io

from tests.contacts.test_spreadsheet_import import MAPPING, SHOP_SHEET
from tests.contacts.xlsx_files import xlsx_bytes
from tests.e2e.test_system import client_for, eventually

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


async def test_xlsx_dry_run_then_import_then_orders_export(system):
    team = client_for(system, system.create_key("crm-team", "contacts:read contacts:write orders:read orders:write"))
    async with team:
        book = xlsx_bytes(("مشتریان", SHOP_SHEET))
        dry = await team.post("/v1/contacts/import/dry-run", content=book, headers={"Content-Type": XLSX},
                              params={"mapping": MAPPING})
        assert dry.status_code == 200, dry.text
        assert (dry.json()["valid"], dry.json()["failed"]) == (2, 3)
        assert (await team.get("/v1/contacts", params={"q": "مریم"})).json()["items"] == []  # nothing written
        job = await team.post("/v1/contacts/import", content=book, headers={"Content-Type": XLSX},
                              params={"mapping": MAPPING})
        assert job.status_code == 202, job.text

        async def finished():
            state = (await team.get(f"/v1/contacts/imports/{job.json()['id']}")).json()
            return state if state["status"] in ("completed", "failed") else None

        done = await eventually(finished)
        assert done["status"] == "completed" and done["counts"]["created"] == 2
        maryam = (await team.get("/v1/contacts/lookup", params={"email": "maryam@example.ir"})).json()
        assert maryam["phones"] == ["+989121234567"]

        posted = await team.post("/v1/orders", json={
            "platform": "tehran-shop", "external_id": "T-1", "customer": {"id": maryam["id"]}, "currency": "IRR",
            "lines": [{"sku": "TEA", "name": "چای", "quantity": 2, "unit_price": "1250000"}], "total": "2500000",
            "placed_at": "2026-03-20T09:30:00Z"})
        assert posted.status_code == 201, posted.text
        export = await team.get("/v1/orders/export", params={"platform": "tehran-shop", "bom": "true"})
        assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
        [row] = list(csv.DictReader(io.StringIO(export.content.decode("utf-8-sig"))))
        assert (row["customer_id"], row["currency"], row["total"], row["items"]) == (maryam["id"], "IRR", "2500000",
                                                                                     "TEA x 2")
