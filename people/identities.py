"""Identity addresses and their one canonical spelling.

Every address is normalised before it is stored or looked up, so the same person
texting as ``(415) 555-0100`` and ``+1 415 555 0100`` is one identity.
"""

from __future__ import annotations

import re

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from store.errors import ValidationFailed

IDENTITY_KINDS = ("phone", "email", "slack", "webchat")
_VISITOR = re.compile(r"^v_[A-Za-z0-9_-]{20,64}$")


def to_e164(raw: str, region: str) -> str:
    """``raw`` as an E.164 number; ``region`` applies when it has no country code."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise ValidationFailed(f"'{raw}' is not a phone number: {exc}") from exc
    if not phonenumbers.is_possible_number(number):
        raise ValidationFailed(f"'{raw}' is not a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def to_email(raw: str) -> str:
    """``raw`` as a lower-cased, syntactically valid email address (no DNS lookups)."""
    try:
        checked = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValidationFailed(f"'{raw}' is not an email address: {exc}") from exc
    return checked.normalized.lower()


def is_visitor_id(raw: str) -> bool:
    """Whether ``raw`` has the shape of a web chat visitor id this gateway issues."""
    return bool(_VISITOR.match(raw))


def normalise(kind: str, address: str, region: str) -> str:
    """The canonical address for an identity of ``kind``."""
    if kind == "phone":
        return to_e164(address, region)
    if kind == "email":
        return to_email(address)
    if kind == "webchat":
        if not is_visitor_id(address):
            raise ValidationFailed("not a web chat visitor id")
        return address
    if kind == "slack":
        return address.strip().upper()
    raise ValidationFailed(f"unknown identity kind '{kind}' (valid: {', '.join(IDENTITY_KINDS)})")
