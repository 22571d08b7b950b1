"""The contacts service's settings: the common ones plus its suppression list (suppression.py).

Each is read from the environment variable of the same name in upper case
(CONTACTS_SUPPRESSION_SECRET, CONTACTS_SUPPRESSION_MODE); docs/contacts.md explains them.
"""
from __future__ import annotations

from typing import Literal

from services.common.settings import ServiceSettings, check_secret, extended_settings


class ContactsSettings(ServiceSettings):
    # The HMAC key of the suppression list. Keep it as long as the database: with another key, the
    # identities of people erased before no longer match. The service refuses to start without it.
    contacts_suppression_secret: str = ""
    # What happens when an erased person's email, phone or external id comes back in a create,
    # update, batch, import or order: "refuse" it (409 identity-suppressed; an order stays a guest
    # sale), or "flag" it: store it and tag the contact "previously-erased" for a person to review.
    contacts_suppression_mode: Literal["refuse", "flag"] = "refuse"

    def check_serving(self) -> None:
        check_secret("CONTACTS_SUPPRESSION_SECRET", self.contacts_suppression_secret, self.environment)


def contacts_settings(settings: ServiceSettings | None = None, **overrides) -> ContactsSettings:
    return extended_settings(ContactsSettings, "contacts", settings, **overrides)
