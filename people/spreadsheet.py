"""The member CSV format (DESIGN §6): columns, reading rows, writing rows.

Columns: ``email, phone, name, kind, role, labels, notify_sms, notify_email,
notify_voice, data.<field>`` in any order. A row needs an email or a phone; ``labels``
are ``;``-separated; booleans are ``true/false/yes/no/1/0``; an empty cell changes
nothing. Rows are numbered as a spreadsheet shows them: the header is row 1, and a
quoted field spanning lines is still one row.

Cells that a spreadsheet would run as a formula (starting with ``= + - @``, tab, CR or
LF) are written with a leading ``'``; reading strips it again, so our own exports
re-import unchanged (a ``'`` already there is doubled, so that too round-trips).

``data.<field>`` cells are typed (docs/csv.md): a cell that is a JSON number, ``true``,
``false``, object, array or ``"quoted string"`` is that value; any other cell is text, as
written; a leading ``'`` makes the rest text, whatever it looks like (``'02134`` is not
needed, ``02134`` is no JSON number, but ``'12345`` keeps a zip code a string). Exports
write each value so that it reads back identical.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from people.directory import views
from people.identities import to_e164, to_email
from store.errors import ValidationFailed
from store.models import Member
from store.text import find_unstorable, refuse_constant

STANDARD = ("email", "phone", "name", "kind", "role", "labels", "notify_sms", "notify_email",
            "notify_voice")  # fmt: skip
KINDS = ("team", "contact", "anonymous")  # anonymous: only to leave one as it is
TRUE = {"true", "yes", "1"}
FALSE = {"false", "no", "0"}
MAX_FIELD = 64 * 1024
MAX_PARSE_FIELD = 1024 * 1024  # beyond this the file itself is refused
FORMULA = ("=", "+", "-", "@", "\t", "\r", "\n")
_DATA_FIELD = re.compile(r"^data\.[A-Za-z0-9_-]{1,64}$")


class FileRejected(ValidationFailed):
    """The file as a whole is unusable (nothing is imported)."""


@dataclass(frozen=True)
class RowError:
    row: int
    column: str
    message: str


@dataclass
class Row:
    """One valid row: normalised values; None means "not given" (changes nothing)."""

    number: int
    email: str | None = None
    phone: str | None = None
    name: str | None = None
    kind: str | None = None
    role: str | None = None
    labels: list[str] = field(default_factory=list)
    notify: dict[str, bool] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


def neutralise(value: str) -> str:
    """``value`` safe to open in a spreadsheet (and restorable by ``restore``)."""
    return "'" + value if value.lstrip("'")[:1] in FORMULA and value else value


def restore(value: str) -> str:
    return value[1:] if value[:1] == "'" and value.lstrip("'")[:1] in FORMULA else value


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is out of range")
    return number


def to_json_value(text: str) -> Any:
    """The JSON value ``text`` spells, or None when it is no (non-null) JSON value.

    Strict JSON: no NaN or Infinity, no number beyond a float; ``null`` is not a value here
    (an import never erases, and "null" stays text)."""
    if not text or text[0] not in '-0123456789tf{["':
        return None  # the usual text cell, without trying to parse it
    try:
        return json.loads(text, parse_float=_finite, parse_constant=refuse_constant)
    except (ValueError, RecursionError):
        return None


def to_data_value(cell: str) -> Any:
    """A ``data.`` cell as stored: ``'`` + text is that text, JSON is its value, else text."""
    if cell[:1] == "'":
        return cell[1:]
    value = to_json_value(cell)
    return cell if value is None else value


def to_data_cell(value: Any) -> str:
    """The ``data.`` cell that ``to_data_value`` (after ``strip``) reads back as ``value``."""
    if value is None:
        return ""  # an empty cell: changes nothing
    if not isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # numbers, booleans, objects, arrays
    if not value or value != value.strip():
        return json.dumps(value, ensure_ascii=False)  # whitespace a cell would lose
    if value[0] in (*FORMULA, "'") or to_json_value(value) is not None:
        return "'" + value  # a formula, or text that would read as another type
    return value


def header(cells: list[str]) -> list[str]:
    """The column names of a header row; unknown or repeated columns refuse the file."""
    names = [c.strip() for c in cells]
    names = [n.lower() if n.lower() in STANDARD else n for n in names]
    unknown = [n for n in names if n not in STANDARD and not _DATA_FIELD.match(n)]
    if unknown:
        raise FileRejected(
            f"unknown columns: {', '.join(repr(u) for u in unknown)} "
            f"(valid: {', '.join(STANDARD)}, data.<field>)"
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise FileRejected(f"repeated columns: {', '.join(repeated)}")
    if "email" not in names and "phone" not in names:
        raise FileRejected("the file needs an email or a phone column")
    return names


@dataclass
class Reader:
    """Reads a CSV text stream record by record, counting rows like a spreadsheet."""

    stream: IO[str]
    columns: list[str] = field(default_factory=list)
    row: int = 1

    def __post_init__(self) -> None:
        csv.field_size_limit(MAX_PARSE_FIELD)
        self._records = csv.reader(self.stream, strict=True)

    def read_header(self) -> list[str]:
        first = self._next()
        if first is None:
            raise FileRejected("the file is empty")
        self.columns = header(first)
        return self.columns

    def _next(self) -> list[str] | None:
        try:
            return next(self._records)
        except StopIteration:
            return None
        except csv.Error as exc:
            line = self._records.line_num
            raise FileRejected(f"the file is not valid CSV at line {line}: {exc}") from exc
        except UnicodeDecodeError as exc:
            line = self._records.line_num + 1
            raise FileRejected(
                f"the file is not UTF-8 (byte {exc.object[exc.start : exc.start + 1]!r} near "
                f"line {line}); save it as UTF-8 and try again"
            ) from exc

    def records(self, limit: int) -> list[tuple[int, list[str]]]:
        """Up to ``limit`` further records with their row numbers (blank lines skipped)."""
        out: list[tuple[int, list[str]]] = []
        while len(out) < limit:
            cells = self._next()
            if cells is None:
                break
            self.row += 1
            if cells and any(c.strip() for c in cells):
                out.append((self.row, cells))
        return out


def count_rows(stream: IO[str]) -> int:
    """Check the whole file's structure and count its data rows (nothing is kept)."""
    reader = Reader(stream)
    reader.read_header()
    total = 0
    while batch := reader.records(5000):
        total += len(batch)
    return total


def _bool(value: str) -> bool | None:
    lowered = value.lower()
    return True if lowered in TRUE else False if lowered in FALSE else None


def parse_row(
    number: int, columns: list[str], cells: list[str], region: str
) -> tuple[Row | None, list[RowError]]:
    """A valid ``Row``, or the errors that make it invalid (a row is all or nothing)."""
    if len(cells) != len(columns):
        return None, [RowError(number, "", f"expected {len(columns)} cells, found {len(cells)}")]
    row, errors = Row(number), []
    for column, raw in zip(columns, cells, strict=True):
        value = raw.strip() if column.startswith("data.") else restore(raw.strip())
        if not value:
            continue
        if "\x00" in value:
            errors.append(RowError(number, column, "contains a NUL character"))
            continue
        if len(value) > MAX_FIELD:
            errors.append(RowError(number, column, f"longer than {MAX_FIELD // 1024} KB"))
            continue
        problem = _set(row, column, value, region)
        if problem:
            errors.append(RowError(number, column, problem))
    if not errors and not row.email and not row.phone:
        errors.append(RowError(number, "email", "a row needs an email or a phone"))
    return (None, errors) if errors else (row, [])


def _set(row: Row, column: str, value: str, region: str) -> str | None:
    """Put ``value`` on ``row``; the reason it is not acceptable, if it is not."""
    try:
        if column == "email":
            row.email = to_email(value)
        elif column == "phone":
            row.phone = to_e164(value, region)
        elif column == "name":
            if len(value) > 200:
                return "longer than 200 characters"
            row.name = value
        elif column == "kind":
            if value not in KINDS:
                return f"unknown kind '{value}' (valid: {', '.join(KINDS)})"
            row.kind = value
        elif column == "role":
            row.role = value
        elif column == "labels":
            labels = sorted({label.strip() for label in value.split(";") if label.strip()})
            if any(len(label) > 100 for label in labels):
                return "a label is longer than 100 characters"
            row.labels = labels
        elif column.startswith("notify_"):
            flag = _bool(value)
            if flag is None:
                return f"'{value}' is not a boolean (true/false/yes/no/1/0)"
            row.notify[column.removeprefix("notify_")] = flag
        else:
            data = to_data_value(value)
            found = find_unstorable(data)
            if found is not None:  # a JSON cell's escapes (\u0000, \ud800) decode to these
                return f"holds {found[1]}" + (f" at {found[0]}" if found[0] != "body" else "")
            row.data[column.removeprefix("data.")] = data
    except ValidationFailed as exc:
        return exc.message
    return None


def _cell(value: str | bool | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return neutralise(value)


async def data_fields(session: AsyncSession, condition: ColumnElement[bool]) -> list[str]:
    """The top-level ``data`` keys of the members matching ``condition``."""
    keys: set[str] = set()
    stream = await session.stream_scalars(select(Member.data).where(condition))
    async for data in stream:
        keys.update(data or {})
    return sorted(keys)


async def export_rows(
    session: AsyncSession, condition: ColumnElement[bool], chunk: int = 1000
) -> AsyncIterator[str]:
    """The CSV text of every matching member, a chunk of rows at a time."""
    fields = await data_fields(session, condition)
    columns = [*STANDARD, *(f"data.{f}" for f in fields)]
    yield _lines([columns])
    stream = await session.stream_scalars(
        select(Member).where(condition).order_by(Member.id).execution_options(yield_per=chunk)
    )
    async for members in stream.partitions(chunk):
        rows = []
        for view in await views(session, members):
            m = view.member
            data = m.data or {}
            standard = [m.email, m.phone, m.name, m.kind, m.role, ";".join(view.labels)]
            flags = [m.notify_sms, m.notify_email, m.notify_voice]
            cells = [_cell(v) for v in [*standard, *flags]]
            rows.append([*cells, *(to_data_cell(data.get(f)) for f in fields)])
        yield _lines(rows)


def _lines(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


def errors_csv(errors: Iterator[RowError]) -> str:
    return _lines(
        [["row", "column", "message"]] + [[str(e.row), e.column, e.message] for e in errors]
    )
