"""Reading mail: the text of a message (HTML made plain, quotes and signature trimmed),
its headers (even malformed ones), whether it was sent by a machine (never answered), and
whether our own receiving server vouches for its sender (``dmarc_passed``).
"""

from __future__ import annotations

import html
import re
from email.message import EmailMessage
from email.utils import parseaddr
from html.parser import HTMLParser

from channels.base import refuse_nul

_QUOTE_HEADER = re.compile(r"^\s*(On .{3,200} wrote:|-{2,} ?Original Message ?-{2,}|From: .+)$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_AUTOMATIC_SENDERS = re.compile(r"^(mailer-daemon|postmaster|no-?reply|bounces?)[@+]", re.I)


class _Text(HTMLParser):
    """HTML to plain text: block elements become line breaks, scripts and styles vanish."""

    BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "blockquote"})

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    parser = _Text()
    parser.feed(markup)
    text = html.unescape("".join(parser.parts))
    return re.sub(r"\n\s*\n+", "\n\n", re.sub(r"[ \t]+", " ", text)).strip()


def trim(text: str) -> str:
    """The new part of a reply: quoted history and the signature removed."""
    kept: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.rstrip() == "--" or line == "-- " or _QUOTE_HEADER.match(line):
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line)
    return "\n".join(kept).strip()


def clean(value: str) -> str:
    """A header value from outside with control characters (CR, LF...) made spaces."""
    return _CONTROL.sub(" ", value).strip()


def automatic(message: EmailMessage, return_path: str | None) -> str | None:
    """Why ``message`` must not be answered, or None."""
    auto = str(message.get("Auto-Submitted", "")).strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    precedence = str(message.get("Precedence", "")).strip().lower()
    if precedence in ("bulk", "junk", "list"):
        return f"Precedence: {precedence}"
    if any(key.lower().startswith("list-") for key in message):
        return "mailing list"
    suppress = str(message.get("X-Auto-Response-Suppress", "")).lower()
    if "oof" in suppress or "all" in suppress:
        return "X-Auto-Response-Suppress"
    if message.get("X-Autoreply") or message.get("X-Autorespond"):
        return "X-Autoreply"
    if return_path is not None and return_path.strip() in ("", "<>"):
        return "empty Return-Path"
    sender = parseaddr(str(message.get("From", "")))[1]
    if _AUTOMATIC_SENDERS.match(sender):
        return "a mailer daemon"
    if message.get_content_type() == "multipart/report":
        return "a delivery report"
    return None


def header_of(message: EmailMessage, name: str) -> str:
    """A header's value; its raw text when the email package cannot parse it."""
    try:
        return str(message.get(name, ""))
    except Exception:  # a malformed Message-ID ("<>") raises inside the header registry
        raw = next((v for k, v in message.raw_items() if k.lower() == name.lower()), "")
        return str(raw)


def refuse_nul_headers(message: EmailMessage) -> None:
    """Refuse a NUL in any header, as sent or once decoded (``=?utf-8?q?=00?=``)."""
    for name, value in message.raw_items():
        try:
            decoded = str(message.policy.header_fetch_parse(name, value))
        except Exception:  # a header the registry cannot parse: its raw text is what is read
            decoded = str(value)
        refuse_nul(decoded, f"the {clean(name)[:60]} header")


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = str(part.get_content())
    except (LookupError, UnicodeError):  # an unknown charset: read it as well as we can
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else ""
    return html_to_text(content) if part.get_content_type() == "text/html" else content


AUTHENTICATION_RESULTS = "Authentication-Results"
_RESULT = re.compile(r"\s*([A-Za-z0-9_.-]+)\s*(?:/\s*\d+\s*)?=\s*([A-Za-z0-9_-]+)")
_HEADER_FROM = re.compile(r"\bheader\.from\s*=\s*([^\s;]+)", re.I)


def dmarc_passed(message: EmailMessage, authserv_id: str, sender: str) -> bool:
    """Whether the topmost ``Authentication-Results`` header that ``authserv_id`` wrote
    says ``dmarc=pass`` for ``sender``'s domain (RFC 8601).

    Headers are added on top, so the topmost one with our server's id is the one it added
    last; any below it, and any with another id, may be the sender's own and are not read.
    Values are read raw (an encoded word is not decoded into a ``;``), quoted strings and
    comments are skipped, and a ``header.from`` that names another domain is no pass.
    """
    for name, value in message.raw_items():
        if name.lower() != AUTHENTICATION_RESULTS.lower():
            continue
        serv_id, results = _authentication_results(str(value))
        if serv_id != authserv_id.lower():
            continue
        domain = sender.rpartition("@")[2].lower()
        for result in results:
            found = _RESULT.match(result)
            if found is None or (found[1].lower(), found[2].lower()) != ("dmarc", "pass"):
                continue
            named = _HEADER_FROM.search(result[found.end() :])
            return named is None or named[1].strip('"').lower().rpartition("@")[2] == domain
        return False
    return False


def _authentication_results(value: str) -> tuple[str, list[str]]:
    """An ``Authentication-Results`` value as (authserv-id, [resinfo...]), lower-cased id;
    comments dropped, quoted strings kept whole (a ``;`` inside one splits nothing)."""
    parts, current, depth, quoted, escaped = [], [], 0, False, False
    for char in value.replace("\r", "").replace("\n", ""):
        if escaped:
            escaped = False
            current.append(char if depth == 0 else "")
        elif char == "\\":
            escaped = True
        elif quoted:
            quoted = char != '"'
            current.append(char)
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif depth:
            continue
        elif char == '"':
            quoted = True
            current.append(char)
        elif char == ";":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    head = parts[0].split()
    return (head[0].strip('"').lower() if head else ""), parts[1:]
