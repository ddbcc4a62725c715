"""Channel adapters, one module each, found by name through ``REGISTRY``.

Modules are imported only when a workspace configures them, so an unused channel's
SDK is never loaded. Adding a channel: its module, one line here, its tests.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from store.errors import ConfigError

if TYPE_CHECKING:
    from channels.base import Channel

REGISTRY: dict[str, str] = {
    "sms": "channels.sms:SmsChannel",
    "webchat": "channels.webchat:WebChatChannel",
    "email": "channels.email:EmailChannel",
    "voice": "channels.voice:VoiceChannel",
    "slack": "channels.slack:SlackChannel",
}


def load(name: str) -> type[Channel]:
    """The channel class registered as ``name``; an unknown name lists the valid ones."""
    try:
        target = REGISTRY[name]
    except KeyError:
        valid = ", ".join(sorted(REGISTRY))
        raise ConfigError(f"unknown channel '{name}' (valid: {valid})") from None
    module_name, _, attr = target.partition(":")
    cls: type[Channel] = getattr(importlib.import_module(module_name), attr)
    return cls
