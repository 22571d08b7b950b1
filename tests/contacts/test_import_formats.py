"""CSV and JSON Lines parsing for imports: pure functions, no database."""
from __future__ import annotations

import io

import pytest

from services.common.errors import UnsupportedMediaType
from services.contacts.import_formats import (RowError, column_for, csv_plan, csv_row_to_item, csv_rows,
                                              detect_format, jsonl_rows, read_csv_header)


def parse_csv(text: str | bytes) -> list:
    stream = io.BytesIO(text.encode() if isinstance(text, str) else text)
    plan, offset = read_csv_header(stream)
    return list(csv_rows(stream, plan, offset=offset, row=2))


def test_columns_become_a_contact_create_dict():
    plan = csv_plan(["Given_Name", "email", "phones", "tags", "city", "country", "external_id",
                     "attribute.loyalty_tier", "consent.email", "social.instagram", "id"])
    item, errors = csv_row_to_item(plan, ["  سارا ", "a@x.com", "0912 111 2233; +98 912 000 1111", "vip;;new",
                                          "تهران", "ir", "shopify:c-1;crm:9", "gold", "Granted", "@sara", "ignored"])
    assert errors == []
    assert item == {"given_name": "سارا", "emails": ["a@x.com"], "phones": ["0912 111 2233", "+98 912 000 1111"],
                    "tags": ["vip", "new"], "addresses": [{"city": "تهران", "country": "ir"}],
                    "external_ids": [{"system": "shopify", "id": "c-1"}, {"system": "crm", "id": "9"}],
                    "attributes": {"loyalty_tier": "gold"}, "consent": {"email": {"status": "granted", "source": "import"}},
                    "social_handles": {"instagram": "@sara"}}


def test_empty_cells_are_not_given_and_unknown_columns_are_listed_once():
    plan = csv_plan(["given_name", "family_name", "email", "favourite_colour", "consent.pigeon", "created_at"])
    assert plan.unknown == ("favourite_colour", "consent.pigeon")
    item, errors = csv_row_to_item(plan, ["Ali", "", "", "blue", "granted", "2026-01-01"])
    assert item == {"given_name": "Ali"} and errors == []


def test_csv_level_mistakes_are_row_errors_with_the_column():
    plan = csv_plan(["email", "external_ids", "consent.sms"])
    _item, errors = csv_row_to_item(plan, ["a@x.com", "no-colon", "maybe", "extra"])
    assert errors == [RowError("row", "has 4 cells but the header names 3 columns"),
                      RowError("external_ids", "'no-colon' is not system:id (such as shopify:1234)"),
                      RowError("consent.sms", "'maybe' is neither granted nor withdrawn")]


def test_validation_errors_point_at_the_column_as_written():
    plan = csv_plan(["Email", "city", "attribute.tier", "consent.email"])
    assert column_for(["emails", 0], plan) == "Email"
    assert column_for(["addresses", 0, "country"], plan) == "country"
    assert column_for(["attributes", "tier"], plan) == "attribute.tier"
    assert column_for(["consent", "email", "status"], plan) == "consent.email"
    assert column_for(["emails", 0], None) == "emails.0"


def test_bom_persian_text_quoted_newlines_and_row_numbers():
    text = ("\ufeffgiven_name,family_name,email\r\n"
            "علی,کریمی,ali@example.com\r\n"
            "\r\n"
            '"Multi\nline",x,m@example.com\r\n'
            ",,\r\n"
            "Last,One,last@example.com\r\n")
    rows = parse_csv(text)
    assert [(r.row, r.item["given_name"]) for r in rows] == [(2, "علی"), (4, "Multi\nline"), (6, "Last")]
    assert rows[-1].end_offset == len(text.encode())


def test_resuming_at_an_offset_continues_with_the_next_row():
    text = "email\na@x.com\nb@x.com\nc@x.com\n".encode()
    first = parse_csv(text)
    stream = io.BytesIO(text)
    plan, _ = read_csv_header(stream)
    rest = list(csv_rows(stream, plan, offset=first[0].end_offset, row=first[0].row + 1))
    assert [(r.row, r.item) for r in rest] == [(3, {"emails": ["b@x.com"]}), (4, {"emails": ["c@x.com"]})]


def test_invalid_utf8_is_an_error_for_that_row_only():
    rows = parse_csv(b"given_name\nok\n\xff\xfe bad\nfine\n")
    assert [(r.row, r.item, [e.reason for e in r.errors]) for r in rows] == [
        (2, {"given_name": "ok"}, []), (3, None, ["is not valid UTF-8"]), (4, {"given_name": "fine"}, [])]


def test_an_over_long_line_is_skipped_as_a_row_error(monkeypatch):
    from services.contacts import import_formats

    monkeypatch.setattr(import_formats, "MAX_LINE_BYTES", 64)
    text = "given_name\nok\n" + "x" * 500 + "\nfine\n"
    rows = parse_csv(text)
    assert [(r.row, r.item, [e.reason for e in r.errors]) for r in rows] == [
        (2, {"given_name": "ok"}, []), (3, None, ["is longer than 0 KiB"]), (4, {"given_name": "fine"}, [])]
    assert rows[-1].end_offset == len(text)
    lines = list(jsonl_rows(io.BytesIO(b'{"a": "' + b"y" * 300 + b'"}\n{"given_name": "b"}\n'), offset=0, row=1))
    assert [(r.row, r.item) for r in lines] == [(1, None), (2, {"given_name": "b"})]


def test_header_must_exist_and_be_utf8():
    with pytest.raises(ValueError, match="no readable CSV header"):
        read_csv_header(io.BytesIO(b""))
    with pytest.raises(ValueError, match="header is not valid UTF-8"):
        read_csv_header(io.BytesIO(b"given_n\xe4me\n"))


def test_formula_defusing_quote_is_removed():
    plan = csv_plan(["given_name", "family_name"])
    assert csv_row_to_item(plan, ["'=SUM(A1)", "'plain"])[0] == {"given_name": "=SUM(A1)", "family_name": "'plain"}


def test_jsonl_lines_line_numbers_and_errors():
    data = b'{"given_name": "a", "id": "dropped", "version": 3}\n\n[1]\n{bad\n\xef\xbb\xbf\n'
    rows = list(jsonl_rows(io.BytesIO(b"\xef\xbb\xbf" + data), offset=0, row=1))
    assert rows[0].row == 1 and rows[0].item == {"given_name": "a"}
    assert [(r.row, r.errors[0].field) for r in rows[1:]] == [(3, "line"), (4, "line"), (5, "line")]


@pytest.mark.parametrize("requested,content_type,expected", [
    (None, "text/csv", "csv"), (None, "text/csv; charset=utf-8", "csv"), (None, "application/x-ndjson", "jsonl"),
    (None, "application/jsonl", "jsonl"), ("jsonl", "text/plain", "jsonl"), ("csv", None, "csv")])
def test_format_from_query_or_content_type(requested, content_type, expected):
    assert detect_format(requested, content_type) == expected


@pytest.mark.parametrize("content_type", ["application/json", None, "text/csv; charset=windows-1256"])
def test_other_content_types_are_415(content_type):
    with pytest.raises(UnsupportedMediaType):
        detect_format(None, content_type)
