"""The admin HTTP API (``/api/...``): the endpoint list, assembled from one module per
resource, and its OpenAPI document (``/api/openapi.json``).

``core`` holds what every endpoint shares (``Endpoint``, ``Call``, the one access check,
paging and parsing helpers); each resource module imports ``core``, never this package.
"""

from __future__ import annotations

from aiohttp import web

from gateway.api import (
    access,
    conversations,
    imports,
    live,
    member_qualifications,
    members,
    openapi,
    qualifications,
)
from gateway.api.core import Endpoint, route

ENDPOINTS: list[Endpoint] = [
    *members.ENDPOINTS,
    *conversations.ENDPOINTS,
    *imports.ENDPOINTS,
    *access.ENDPOINTS,
    *live.ENDPOINTS,
    *qualifications.ENDPOINTS,
    *member_qualifications.ENDPOINTS,
]


def add(app: web.Application) -> None:
    """Route every endpoint, and the OpenAPI document describing them."""
    for endpoint in ENDPOINTS:
        app.router.add_route(endpoint.method, endpoint.path, route(endpoint))
    app.router.add_get("/api/openapi.json", openapi.handler(ENDPOINTS))
