"""Contact imports from Excel workbooks, a column mapping for the shop's own headers (CSV too),
and the dry run that shows the first rows as they would be stored and every row error before
anything is written."""
from __future__ import annotations

import io
from datetime import date, datetime

import pytest
from sqlalchemy import func, select

from services.common.errors import InvalidInput
from services.contacts.column_mapping import mapped_header, parse_mapping
from services.contacts.import_formats import XLSX_MEDIA_TYPE
from services.contacts.models import ContactRow
from services.contacts.spreadsheets import cell_text, read_sheet, sheet_rows
from tests.contacts.test_import_export import find, run_import, start_import
from tests.contacts.xlsx_files import xlsx_bytes

MAPPING = ('{"نام": "given_name", "نام خانوادگی": "family_name", "Mobile": "phones", "ایمیل": "email", '
           '"تاریخ تولد": "birth_date", "شهر": "city", "کشور": "country", "پیامک": "consent.sms", '
           '"Notes": null}')
SHOP_SHEET = [
    ["نام", "نام خانوادگی", "Mobile", "ایمیل", "تاریخ تولد", "شهر", "کشور", "پیامک", "Notes"],
    ["مریم", "رضایی", 9121234567, "maryam@example.ir", date(1990, 3, 21), "تهران", "IR", "granted", "VIP"],
    ["علی", "كريمي", "۰۹۳۵ ۱۱۱ ۲۲۳۳", "ali@example.ir", None, "مشهد", "IR", "withdrawn", None],
    [None, None, None, None, None, None, None, None, None],
    ["Bad", "Email", None, "not-an-email", None, None, None, None, None],
    ["Bad", "Consent", 9127654321, "bad.consent@example.ir", None, None, None, "maybe", None],
    ["سارا", "احمدی", None, "sara@example.ir", None, "شیراز", None, None, None],
]


async def contact_count(contacts) -> int:
    async with contacts.app.state.ctx.session_factory() as session:
        return (await session.execute(select(func.count()).select_from(ContactRow))).scalar()


def test_cells_read_as_a_person_typed_them():
    assert cell_text(9121234567.0) == "9121234567"  # a mobile in a number cell
    assert cell_text(19.99) == "19.99" and cell_text(True) == "true" and cell_text(None) == ""
    assert cell_text(date(1990, 3, 21)) == "1990-03-21"
    assert cell_text(datetime(1990, 3, 21)) == "1990-03-21"
    assert cell_text(datetime(2026, 3, 21, 9, 30)) == "2026-03-21T09:30:00"


def test_a_sheet_becomes_the_csv_import_items():
    book = xlsx_bytes(("مشتریان", SHOP_SHEET), ("Other", [["email"], ["x@example.com"]]))
    sheet = read_sheet(io.BytesIO(book), parse_mapping(MAPPING))
    rows = list(sheet_rows(sheet, row=2, file_bytes=len(book)))
    assert [r.row for r in rows] == [2, 3, 5, 6, 7]  # the sheet's row numbers; the blank row 4 skipped
    assert rows[0].item == {"given_name": "مریم", "family_name": "رضایی", "phones": ["9121234567"],
                            "emails": ["maryam@example.ir"], "birth_date": "1990-03-21",
                            "addresses": [{"city": "تهران", "country": "IR"}],
                            "consent": {"sms": {"status": "granted", "source": "import"}}}
    assert rows[3].item is None and rows[3].errors[0].field == "consent.sms"
    assert sheet.plan.unknown == ("__skipped__",)  # Notes: skipped on purpose, not "unknown"
    other = read_sheet(io.BytesIO(book), None, "Other")
    assert list(sheet_rows(other, row=2, file_bytes=1))[0].item == {"emails": ["x@example.com"]}
    with pytest.raises(ValueError, match="no sheet named"):
        read_sheet(io.BytesIO(book), None, "Missing")
    with pytest.raises(ValueError, match="not a workbook"):
        read_sheet(io.BytesIO(b"name,email\n"), None)


def test_mappings_are_checked_before_anything_is_read():
    assert mapped_header(["MOBILE ", "Email"], {"Mobile": "phones"}) == ["phones", "Email"]
    for bad in ('["phones"]', '{"Mobile": "telephone"}', "{not json", '{"x": 3}'):
        with pytest.raises(InvalidInput):
            parse_mapping(bad)


async def test_xlsx_import_with_a_mapping(contacts):
    book = xlsx_bytes(("مشتریان", SHOP_SHEET))
    job = await run_import(contacts, book, XLSX_MEDIA_TYPE, mapping=MAPPING)
    assert job["status"] == "completed" and job["format"] == "xlsx", job
    assert job["counts"] == {"created": 2, "updated": 0, "unchanged": 0, "failed": 3}
    # A city without a country is no address (ISO country required), as in a CSV import.
    assert [(e["row"], e["field"]) for e in job["errors"]] == [(5, "email"), (6, "consent.sms"), (7, "country")]
    assert job["warnings"] == [] and job["progress"]["percent"] == 100.0
    maryam = await find(contacts, "maryam@example.ir")
    assert maryam["phones"] == ["+989121234567"] and maryam["birth_date"] == "1990-03-21"
    assert maryam["consent"]["sms"]["status"] == "granted" and maryam["addresses"][0]["city"] == "تهران"
    ali = await find(contacts, "ali@example.ir")
    assert ali["phones"] == ["+989351112233"] and ali["family_name"] == "كريمي"


async def test_csv_import_with_a_mapping(contacts):
    body = "Name,Mobile,E-mail,Shoe size\r\nنگار,09121112233,negar@example.ir,38\r\n".encode()
    job = await run_import(contacts, body, mapping='{"Name": "given_name", "Mobile": "phones", "E-mail": "email"}')
    assert job["status"] == "completed" and job["counts"]["created"] == 1
    assert job["warnings"] == ["unknown columns ignored: Shoe size"]
    assert (await find(contacts, "negar@example.ir"))["phones"] == ["+989121112233"]


async def test_dry_run_shows_rows_as_stored_and_every_error_and_writes_nothing(contacts):
    book = xlsx_bytes(("مشتریان", SHOP_SHEET))
    response = await contacts.post("/v1/contacts/import/dry-run", content=book,
                                   headers={"Content-Type": XLSX_MEDIA_TYPE}, params={"mapping": MAPPING, "preview": 2})
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["rows"], result["valid"], result["failed"], result["errors_total"]) == (5, 2, 3, 3)
    assert [row["row"] for row in result["preview"]] == [2, 3]
    first = result["preview"][0]["contact"]
    assert first["phones"] == ["+989121234567"] and first["emails"] == ["maryam@example.ir"]  # normalized
    assert first["consent"]["sms"]["status"] == "granted"
    assert [(e["row"], e["field"]) for e in result["errors"]] == [(5, "email"), (6, "consent.sms"), (7, "country")]
    assert await contact_count(contacts) == 0
    csv_run = await contacts.post("/v1/contacts/import/dry-run", content=b"email\r\na@example.com\r\nnope\r\n",
                                  headers={"Content-Type": "text/csv"})
    assert csv_run.json()["valid"] == 1 and csv_run.json()["errors"][0]["row"] == 3


async def test_bad_spreadsheet_requests_are_4xx_problems(contacts):
    bad_mapping = await contacts.post("/v1/contacts/import", content=xlsx_bytes(("s", SHOP_SHEET)),
                                      headers={"Content-Type": XLSX_MEDIA_TYPE}, params={"mapping": '{"a": "b"}'})
    assert bad_mapping.status_code == 422 and bad_mapping.headers["content-type"] == "application/problem+json"
    assert bad_mapping.json()["errors"][0]["loc"] == ["query", "mapping", "a"]
    jsonl_mapping = await contacts.post("/v1/contacts/import", content=b'{"emails": ["a@example.com"]}\n',
                                        headers={"Content-Type": "application/x-ndjson"},
                                        params={"mapping": '{"a": "email"}'})
    assert jsonl_mapping.status_code == 422
    not_a_workbook = await contacts.post("/v1/contacts/import/dry-run", content=b"hello", params={"format": "xlsx"},
                                         headers={"Content-Type": "application/octet-stream"})
    assert not_a_workbook.status_code == 422 and "workbook" in not_a_workbook.json()["detail"]
    empty = await contacts.post("/v1/contacts/import/dry-run", content=b"", headers={"Content-Type": XLSX_MEDIA_TYPE})
    assert empty.status_code == 422
    job = await start_import(contacts, b"garbage", XLSX_MEDIA_TYPE)
    from tests.contacts.test_import_export import wait_for
    failed = await wait_for(contacts, job["id"])
    assert failed["status"] == "failed" and "workbook" in failed["error"]
    assert await contact_count(contacts) == 0
