"""The web front door: pages served to browsers.

``console`` is the operator console (its page, its socket pushing each operator's board,
sign-in and sign-out); ``widget`` is the web chat widget's page. Pages and their assets
live in ``static/`` (package data, no build step).
"""

from __future__ import annotations

from aiohttp import web

from gateway.settings import Settings
from gateway.web import console, widget


def add(app: web.Application, settings: Settings) -> None:
    """Route the console, and the widget's page when the web chat channel is configured."""
    console.add(app)
    if "webchat" in settings.channels:
        app.router.add_get("/webchat", widget.page)
