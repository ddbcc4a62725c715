"""SMS pipeline throughput, end to end, as a ratio to a bare webhook handler.

Starts the gateway as its own process (SQLite, the embedded agent, one process) with a
fake Twilio API on loopback, fires N signed SMS webhooks from N distinct numbers at a
fixed concurrency, and waits until every reply has reached the fake. In the same run it
measures a bare aiohttp handler (parse form, check signature, return TwiML) under the
same load. Prints messages/s end to end, webhook latency p50/p99 for both, and the ratio.

    .venv/bin/python benchmarks/sms_pipeline.py [--messages 2000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
from aiohttp.test_utils import TestServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fakes.twilio_api import FakeTwilio
from tests.helpers import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    PUBLIC_URL,
    make_config,
    sms_form,
    twilio_signature,
)
from tests.process import ServeProcess

PATH = "/channels/twilio/sms"
WARMUP = 100  # requests each server gets before it is measured (caches, connections)
WORKERS = 32  # agent turns in flight; more raises throughput and webhook latency together
Request = tuple[str, dict[str, str]]


def _requests(count: int, first: int = 2_000_000) -> list[Request]:
    out = []
    for i in range(count):
        form = sms_form("What are your opening hours?", from_=f"+1415{first + i:07d}")
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": twilio_signature(PATH, form),
        }
        out.append((urlencode(form), headers))
    return out


async def _fire(
    url: str, requests: list[tuple[str, dict[str, str]]], concurrency: int
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue: asyncio.Queue[Request] = asyncio.Queue()
    for item in requests:
        queue.put_nowait(item)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            while not queue.empty():
                body, headers = queue.get_nowait()
                started = time.perf_counter()
                async with http.post(url + PATH, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"webhook answered {response.status}")
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


def _pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[int(p) - 1] * 1000


async def main(messages: int, concurrency: int, database: str | None = None) -> None:
    fake = FakeTwilio(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)
    fake_server = TestServer(fake.app(), host="127.0.0.1", port=0)
    await fake_server.start_server()
    base = str(fake_server.make_url("")).rstrip("/")
    requests = _requests(messages)
    warmup = _requests(WARMUP, first=1_000_000)
    with tempfile.TemporaryDirectory() as tmp:
        here = Path(tmp)
        bare = await _start_bare(here)
        try:
            await _fire(bare.url, warmup, concurrency)
            bare_seconds, bare_latencies = await _fire(bare.url, requests, concurrency)
        finally:
            await bare.stop()

        database = database or f"sqlite+aiosqlite:///{here / 'bench.db'}"
        config = make_config(database, twilio_base=base, workers=WORKERS)
        gateway = await ServeProcess.start(config, here / "frontdesk.yaml")
        try:
            await _fire(gateway.url, warmup, concurrency)
            await fake.wait_sent(WARMUP, timeout=60)
            fake.sent.clear()
            started = time.perf_counter()
            webhook_seconds, latencies = await _fire(gateway.url, requests, concurrency)
            await fake.wait_sent(messages, timeout=600)
            end_to_end = time.perf_counter() - started
        finally:
            await gateway.stop()
    await fake_server.close()

    bare_rate = messages / bare_seconds
    e2e_rate = messages / end_to_end
    print(f"messages: {messages}, concurrency: {concurrency}, database: {database.split(':')[0]}")
    print(
        f"bare handler:  {bare_rate:8.0f} req/s   p50 {_pct(bare_latencies, 50):6.1f} ms"
        f"   p99 {_pct(bare_latencies, 99):6.1f} ms"
    )
    print(
        f"gateway hooks: {messages / webhook_seconds:8.0f} req/s"
        f"   p50 {_pct(latencies, 50):6.1f} ms"
        f"   p99 {_pct(latencies, 99):6.1f} ms"
    )
    print(f"end to end:    {e2e_rate:8.0f} msg/s (webhook -> agent -> outbox -> Twilio fake)")
    print(f"ratio end-to-end / bare: {e2e_rate / bare_rate:.3f}   (target >= 0.10)")
    print(f"ratio webhooks / bare:   {messages / webhook_seconds / bare_rate:.3f}")


async def _start_bare(here: Path) -> ServeProcess:
    script = Path(__file__).with_name("_bare_sms.py")
    return await ServeProcess.start_command(
        [sys.executable, str(script), PUBLIC_URL, AUTH_TOKEN], here / "bare.log"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--database", help="a migrated, empty database URL (default: a fresh SQLite file)"
    )
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.concurrency, args.database))
