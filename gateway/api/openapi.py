"""``/api/openapi.json``: the admin API described from the same ``Endpoint`` declarations
that route and authorise it, so the document cannot drift from the code."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from gateway.api.core import Endpoint
from people.roles import Need

ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
                    },
                },
            },
            "required": ["code", "message", "details"],
        }
    },
    "required": ["error"],
}
ERRORS = {
    "400": "Bad input",
    "401": "No or unknown token",
    "403": "Your role does not allow this",
    "404": "No such resource (or one you may not see)",
    "409": "Conflicts with the current state",
    "413": "Too large",
    "422": "Failed validation",
}


def _needs(need: Need | None) -> str:
    if need is None:
        return "Anyone may do this to their own record; otherwise as the description says."
    parts = []
    if need.admin_access:
        parts.append("admin access")
    if need.workspace_management:
        parts.append("workspace management")
    if need.feature:
        parts.append(f"{need.feature}: {need.level}")
    return "Needs " + ", ".join(parts) + "."


def _operation(endpoint: Endpoint, schemas: dict[str, Any]) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", endpoint.path)
    ]
    parameters += [
        {"name": name, "in": "query", "required": name == "member", "description": text,
         "schema": {"type": "string"}}
        for name, text in endpoint.query.items()
    ]  # fmt: skip
    parameters += [
        {"name": name, "in": "query", "required": False, "description": text,
         "schema": {"type": "string", "enum": ["true", "false", "1", "0"], "default": "false"}}
        for name, text in endpoint.flags.items()
    ]  # fmt: skip
    slug = re.sub(r"\W+", "_", endpoint.path).strip("_")
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    operation: dict[str, Any] = {
        "summary": endpoint.summary,
        "description": _needs(endpoint.need),
        "operationId": f"{endpoint.method.lower()}_{slug}",
        "tags": [endpoint.tag],
        "parameters": parameters,
        "responses": {
            str(endpoint.status): {"description": "Done"},
            **{code: {"description": text, "content": error} for code, text in ERRORS.items()},
        },
    }  # fmt: skip
    if endpoint.body is not None:
        name = endpoint.body.__name__
        schema = endpoint.body.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
        }
    if endpoint.upload is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                },
            },
        }
    return operation


def document(endpoints: Sequence[Endpoint]) -> dict[str, Any]:
    schemas: dict[str, Any] = {"Error": ERROR}
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "frontdesk admin API",
            "version": "1",
            "description": "JSON over HTTP with `Authorization: Bearer <token>`. Lists are "
            '`{"items": [...], "next": cursor}`; errors are `{"error": {code, message, details}}`.',
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def handler(endpoints: Sequence[Endpoint]) -> Callable[[web.Request], Awaitable[web.Response]]:
    body = document(endpoints)

    async def serve(request: web.Request) -> web.Response:
        return web.json_response(body)

    return serve
