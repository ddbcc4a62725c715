"""HTTP plumbing shared by every route: request ids, the error shape, raw requests.

One middleware gives every error answer the JSON body ``{"error": {"code", "message",
"details"}}``, on every path (the HTML pages answer errors in JSON too; only their
successful answers are HTML): ``FrontdeskError`` branches by their own status and code;
aiohttp's own errors (404 no such route, 405 with its ``Allow`` header, 413 body too large,
400 from a WebSocket handshake...) by theirs; anything else is a logged 500 whose body says
nothing about the cause. Redirects and other non-error ``HTTPException`` answers pass unchanged.
"""

from __future__ import annotations

import logging
import re
import secrets
from http import HTTPStatus
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import MultiDict, MultiDictProxy

from channels.base import RawRequest, refuse_nul
from gateway.logs import request_id
from store.errors import FrontdeskError, ValidationFailed

log = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def error_response(error: FrontdeskError) -> web.Response:
    body = {
        "error": {
            "code": error.code,
            "message": error.message,
            "details": [{"path": d.path, "message": d.message} for d in error.details],
        }
    }
    return web.json_response(body, status=error.status)


@web.middleware
async def request_ids(request: web.Request, handler: Handler) -> web.StreamResponse:
    given = request.headers.get("X-Request-Id", "")
    rid = given if _REQUEST_ID.match(given) else secrets.token_hex(8)
    token = request_id.set(rid)
    try:
        response = await handler(request)
        if not response.prepared:
            response.headers["X-Request-Id"] = rid
        return response
    finally:
        request_id.reset(token)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except FrontdeskError as exc:
        if exc.status >= 500:
            log.error("%s %s failed: %s", request.method, request.path, exc.message)
        elif exc.status in (401, 403):
            log.warning("%s %s denied: %s", request.method, request.path, exc.code)
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # a redirect (or a success raised early) is an answer, not an error
        return _from_aiohttp(exc)
    except Exception:
        if request.writer.output_size > 0:
            raise  # the answer is already on its way: aiohttp can only close the connection
        log.exception("%s %s failed", request.method, request.path)
        return error_response(Internal("something went wrong on our side"))


class Internal(FrontdeskError):
    """An error we did not expect (a bug): its cause stays in the log."""

    code = "internal"
    status = 500


# Codes in the words FrontdeskError's branches use for the same statuses.
_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "payload_too_large",
    422: "validation_failed",
    429: "too_many_attempts",
}


def _from_aiohttp(exc: web.HTTPException) -> web.Response:
    """aiohttp's own error (raised by its router, its body reader, a WebSocket handshake)
    in the JSON error shape, keeping its status and its headers (``Allow`` on a 405)."""
    try:
        phrase = HTTPStatus(exc.status).phrase
    except ValueError:
        phrase = exc.reason
    code = _CODES.get(exc.status) or re.sub(r"[^a-z0-9]+", "_", phrase.lower()).strip("_")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        message = f"{exc.method} is not allowed here (allowed: {allowed})"
    elif exc.text and exc.text != f"{exc.status}: {exc.reason}":
        message = exc.text  # aiohttp's own words say more than the phrase (a size limit)
    else:
        message = phrase
    body = {"error": {"code": code, "message": message, "details": []}}
    keep = {k: v for k, v in exc.headers.items() if k.lower() not in _BODY_HEADERS}
    return web.json_response(body, status=exc.status, headers=keep)


_BODY_HEADERS = {"content-type", "content-length", "content-encoding", "transfer-encoding"}


async def to_raw_request(request: web.Request, public_url: str | None) -> RawRequest:
    """Read ``request`` once into a ``RawRequest`` (body size capped by the app).

    Form bodies must be UTF-8: anything else is refused rather than guessed at.
    """
    body = await request.read()
    form: MultiDict[str] = MultiDict()
    if request.content_type == "application/x-www-form-urlencoded":
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationFailed(f"body is not valid UTF-8 (byte {exc.start})") from exc
        try:
            form.extend(parse_qsl(text, keep_blank_values=True, errors="strict"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValidationFailed(f"form is not valid UTF-8 URL encoding: {exc}") from exc
        for key, value in form.items():
            refuse_nul(key, "a form field's name")
            refuse_nul(value, f"form field {key}")
    url = public_url + request.path_qs if public_url else str(request.url)
    return RawRequest(
        method=request.method,
        url=url,
        path=request.path,
        headers=request.headers,
        form=MultiDictProxy(form),
        body=body,
    )
