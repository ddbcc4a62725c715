"""The baseline: a bare aiohttp handler that parses the form, checks the Twilio signature
and returns empty TwiML — the least any SMS webhook must do. Prints its URL, then serves."""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web
from twilio.request_validator import RequestValidator

TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


def app(public_url: str, token: str) -> web.Application:
    validator = RequestValidator(token)

    async def sms(request: web.Request) -> web.Response:
        form = await request.post()
        signature = request.headers.get("X-Twilio-Signature", "")
        if not validator.validate(public_url + request.path_qs, form, signature):
            return web.Response(status=403)
        return web.Response(text=TWIML, content_type="application/xml")

    application = web.Application()
    application.router.add_post("/channels/twilio/sms", sms)
    return application


async def main(public_url: str, token: str) -> None:
    runner = web.AppRunner(app(public_url, token), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    print(f"frontdesk listening on http://{host}:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
