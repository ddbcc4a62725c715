"""``GET /webchat``: the web chat widget's page (``static/webchat.html``, no build step),
its title filled in from the channel's settings. The widget talks to ``/webchat/ws``
(``gateway.webchat_socket``)."""

from __future__ import annotations

import html
from importlib import resources

from aiohttp import web

from channels.webchat import WebChatSettings
from gateway.state import services
from store.errors import NotFound


def widget_page(settings: WebChatSettings) -> str:
    """The widget page, with its title filled in (HTML-escaped)."""
    template = resources.files("gateway.web").joinpath("static/webchat.html").read_text("utf-8")
    return template.replace("{{title}}", html.escape(settings.title))


async def page(request: web.Request) -> web.Response:
    settings = services(request).settings.channel("webchat")
    if not isinstance(settings, WebChatSettings):
        raise NotFound("no web chat here")
    return web.Response(text=widget_page(settings), content_type="text/html")
