"""The admin HTTP API's core: endpoints declared once, checked by one policy, documented.

Each endpoint is an ``Endpoint``: method, path, the ``Need`` it requires, the request
body model, and a handler that gets a ``Call``. ``route`` authenticates the bearer
token, opens one transaction for the request, checks the need with
``people.roles.allows`` (a denial is a 403, logged, and rolls everything back), parses
and validates the body (400 for malformed JSON, 422 naming each bad field), and turns
the handler's result into JSON. The same declarations produce ``/api/openapi.json``.

Every endpoint needs ``admin_access`` except the self-service ones (a member reading or
changing its own record and tokens), which check access themselves. A resource the
caller may not see is a 404, never a 403 (no endpoint reveals what exists).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.state import Services, services
from people import credentials
from people.roles import Need, Role, RoleBook, allows, load_book
from store.errors import (
    Conflict,
    ErrorDetail,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    ValidationFailed,
    own_errors,
)
from store.models import Member
from store.text import NUL, find_unstorable, loads_json

log = logging.getLogger(__name__)

MAX_PAGE = 200
B = TypeVar("B", bound=BaseModel)


class Unprocessable(ValidationFailed):
    """Well-formed input that fails validation (422, with a detail per field)."""

    code = "validation_failed"
    status = 422


@dataclass(frozen=True)
class Actor:
    """Who is calling, and what their role lets them do."""

    member: Member
    role_name: str
    role: Role

    @property
    def id(self) -> int:
        return self.member.id

    def may(self, need: Need) -> bool:
        return allows(self.role, need)


@dataclass
class Call:
    """One API request in progress: who, in which transaction, with which roles."""

    request: web.Request
    services: Services
    session: AsyncSession
    actor: Actor
    roles: RoleBook
    upload: Path | None = None
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    flags: dict[str, bool] = field(default_factory=dict)  # the endpoint's boolean parameters

    @property
    def region(self) -> str:
        return self.services.settings.workspace.default_region

    def require(self, need: Need) -> None:
        if not self.actor.may(need):
            raise PermissionDenied("your role does not allow this")

    def path_id(self, name: str = "id", what: str = "resource") -> int:
        return parse_id(self.request.match_info[name], what)

    async def json(self) -> Any:
        """The body as strict JSON (400 if it is not: NaN and Infinity are not JSON); 422
        for what the store cannot hold anywhere in it (a NUL character, a lone surrogate)."""
        try:
            raw = await self.request.json(loads=loads_json)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValidationFailed(f"the body is not JSON: {exc}") from exc
        found = find_unstorable(raw)
        if found is None:
            return raw
        path, why = found
        if why == NUL:
            raise Unprocessable("text may not contain NUL characters", [ErrorDetail(path, why)])
        raise Unprocessable(f"the body holds {why}", [ErrorDetail(path, why)])

    async def body(self, model: type[B], **fixed: Any) -> B:
        """The body as ``model``; ``fixed`` fields (from the path) override the body's."""
        raw = await self.json()
        if fixed and isinstance(raw, dict):
            raw = {**raw, **fixed}
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            raise Unprocessable("the body is not valid", validation_details(exc)) from exc


Handler = Callable[[Call], Awaitable[web.StreamResponse | Any]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    need: Need | None = None  # None: the handler checks access itself (self-service)
    body: type[BaseModel] | None = None
    status: int = 200
    tag: str = "members"
    query: dict[str, str] = field(default_factory=dict)  # name -> description
    # Boolean query parameters (name -> description): parsed by ``flags`` before anything
    # else, so a bad value is a 400 that changes nothing; absent means false.
    flags: dict[str, str] = field(default_factory=dict)
    # Reads the request body to a file before the handler's transaction opens.
    upload: Callable[[web.Request, Services], Awaitable[Path]] | None = None


def validation_details(exc: ValidationError, prefix: str = "") -> list[ErrorDetail]:
    details = []
    for error in own_errors(exc):
        path = ".".join(str(p) for p in error["loc"])
        details.append(ErrorDetail(f"{prefix}{path}", error["msg"].removeprefix("Value error, ")))
    return details


def parse_id(raw: str, what: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise NotFound(f"no such {what}") from None
    if not 0 < value < 2**63:
        raise NotFound(f"no such {what}")
    return value


TRUE_WORDS = ("true", "1")
FALSE_WORDS = ("false", "0")


def flags(request: web.Request, names: Iterable[str]) -> dict[str, bool]:
    """The boolean query parameters ``names``: ``true``/``1`` or ``false``/``0``, absent is
    false; any other value, or the parameter given twice, is a 400 (``dry_run=maybe`` must
    never be taken for a real run, nor for a dry one)."""
    parsed = {}
    for name in names:
        given = request.query.getall(name, [])
        if len(given) > 1:
            raise ValidationFailed(f"{name} is given {len(given)} times; give it once")
        if not given or given[0] in FALSE_WORDS:
            parsed[name] = False
        elif given[0] in TRUE_WORDS:
            parsed[name] = True
        else:
            raise ValidationFailed(
                f"{name} must be true or false (or 1 or 0), not {given[0]!r}",
                [ErrorDetail(name, "expected true, false, 1 or 0")],
            )
    return parsed


def page(request: web.Request) -> tuple[int, int]:
    """``?limit=`` (1 to 200, default 50) and ``?cursor=`` (the last id seen)."""
    try:
        limit = int(request.query.get("limit", "50"))
        cursor = int(request.query.get("cursor", "0") or "0")
    except ValueError:
        raise ValidationFailed("limit and cursor must be integers") from None
    if not 0 < limit <= MAX_PAGE:
        raise ValidationFailed(f"limit must be 1 to {MAX_PAGE}")
    if cursor >= 2**63:
        raise ValidationFailed("cursor is not one this API gave out")
    return limit, max(cursor, 0)


def listing(items: list[dict[str, Any]], more: bool) -> dict[str, Any]:
    return {"items": items, "next": items[-1]["id"] if more and items else None}


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


async def _actor(
    request: web.Request, s: Services, session: AsyncSession
) -> tuple[Actor, RoleBook]:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send Authorization: Bearer <token>")
    member = await credentials.authenticate(session, token.strip())
    if member is None:
        raise Unauthenticated("the token is unknown or revoked")
    book = await load_book(session, s.settings.roles)
    return Actor(member=member, role_name=member.role, role=book.get(member.role)), book


def _duplicate(exc: IntegrityError) -> bool:
    """A unique constraint (PostgreSQL's SQLSTATE 23505, SQLite's UNIQUE failure)."""
    code = getattr(exc.orig, "sqlstate", None)
    return code == "23505" or "UNIQUE constraint failed" in str(exc.orig)


def route(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler serving ``endpoint`` (see the module's docstring)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        s = services(request)
        given = flags(request, endpoint.flags)
        upload = None
        if endpoint.upload is not None:
            # Authorise first, then read the body with no transaction open.
            async with s.sessions.begin() as session:
                await _authorise(request, s, session, endpoint)
            upload = await endpoint.upload(request, s)
        try:
            async with s.sessions.begin() as session:
                actor, book = await _authorise(request, s, session, endpoint)
                call = Call(request, s, session, actor, book, upload, flags=given)
                result = await endpoint.handler(call)
        except IntegrityError as exc:
            if upload is not None:
                upload.unlink(missing_ok=True)
            if not _duplicate(exc):
                raise  # a foreign key, NOT NULL or CHECK violation is a bug: a 500
            # A concurrent request made the same unique row first.
            log.info("%s %s lost a race: %s", request.method, request.path, exc.orig)
            raise Conflict("a concurrent request changed the same thing; try again") from exc
        except BaseException:
            if upload is not None:
                upload.unlink(missing_ok=True)
            raise
        if call.upload is not None:  # the handler did not take the file over
            call.upload.unlink(missing_ok=True)
        for action in call.after_commit:
            action()
        if isinstance(result, web.StreamResponse):
            return result
        if result is None:
            return web.Response(status=204)
        return web.json_response(result, status=endpoint.status)

    return handle


async def _authorise(
    request: web.Request, s: Services, session: AsyncSession, endpoint: Endpoint
) -> tuple[Actor, RoleBook]:
    actor, book = await _actor(request, s, session)
    if endpoint.need is not None and not actor.may(endpoint.need):
        log.warning("member %s (%s) denied %s", actor.id, actor.role_name, endpoint.path)
        raise PermissionDenied("your role does not allow this")
    return actor, book


def admin(need: Need) -> Need:
    """``need`` plus admin access (every endpoint but the self-service ones)."""
    return replace(need, admin_access=True)
