"""Emails and phone numbers as the data rules want them: emails validated and compared
case-insensitively, phones in E.164 with a configurable default region. Any service that
receives a customer reference (contacts, orders, interactions) uses these."""
from __future__ import annotations

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from .text_normalization import normalize_digits


class InvalidContactPoint(ValueError):
    pass


def validated_email(raw: str) -> str:
    """The address as it should be stored: validated, domain lower-cased, local part as given."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidContactPoint("an email address is required")
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidContactPoint(f"{raw!r} is not a valid email address: {exc}") from exc
    return result.normalized


def normalize_email(raw: str) -> str:
    """The address in its comparison form (lower case); raises InvalidContactPoint."""
    return validated_email(raw).lower()


def normalize_phone(raw: str, default_region: str) -> str:
    """E.164 (+989121234567); accepts Persian/Arabic digits and national formats."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidContactPoint("a phone number is required")
    text = normalize_digits(raw.strip())
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidContactPoint(f"{raw!r} is not a phone number: {exc}") from exc
    if not phonenumbers.is_possible_number(number) or not phonenumbers.is_valid_number(number):
        raise InvalidContactPoint(f"{raw!r} is not a valid phone number for region {default_region}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
