"""What every Twilio webhook must prove before it is read: Twilio's signature, our
account, and well-formed ids.

Shared by SMS (messages and status callbacks) and voice (every call webhook, recordings,
notification key presses), so that no Twilio door accepts what another refuses.
"""

from __future__ import annotations

import hmac
import re

from twilio.request_validator import RequestValidator

from channels.base import RawRequest
from store.errors import SignatureInvalid, ValidationFailed

# Twilio's ids: a two-letter prefix (AC account, SM/MM message, CA call, RE recording...)
# and 32 hex digits.
SID = re.compile(r"[A-Z]{2}[0-9a-fA-F]{32}")


def verify_twilio(
    validator: RequestValidator, account_sid: str, request: RawRequest, *required: str
) -> None:
    """Refuse the request unless Twilio signed exactly this URL and form for our account
    (``SignatureInvalid``, 403), and every ``*Sid`` field in it -- and each of
    ``required`` -- is a Twilio id (``ValidationFailed``, 400)."""
    # SECURITY: the signature covers the public URL (query included) and every form field;
    # a missing header, another URL or another body all fail here, before anything is
    # stored. The auth token may be shared by subaccounts, or leak from another workspace
    # on it: a request about another account is not ours to act on, however well signed.
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not validator.validate(request.url, request.form, signature):
        raise SignatureInvalid("X-Twilio-Signature does not match this request")
    given = request.form.get("AccountSid", "")
    if not hmac.compare_digest(given.encode(), account_sid.encode()):
        raise SignatureInvalid("AccountSid is not this workspace's Twilio account")
    for name in required:
        if not request.form.get(name):
            raise ValidationFailed(f"{name} is missing")
    for name, value in request.form.items():
        if name.endswith("Sid") and value and not SID.fullmatch(value):
            raise ValidationFailed(
                f"{name} is not a Twilio id (two letters and 32 hex digits, 34 characters)"
            )
