"""HTTP plumbing shared by every route: request ids, the error shape, raw requests.

One middleware maps ``FrontdeskError`` branches to statuses and the JSON body
``{"error": {"code", "message", "details"}}``; anything else is a logged 500 whose body
says nothing about the cause.
"""

from __future__ import annotations

import logging
import re
import secrets
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import MultiDict, MultiDictProxy

from channels.base import RawRequest, refuse_nul
from gateway.errors import FrontdeskError, ValidationFailed
from gateway.logs import request_id

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
