"""Outbound HTTP for abilities, refusing what a model should never reach.

An ability's request goes only to ``http``/``https`` URLs whose host resolves to public
addresses: private, loopback, link-local, multicast, reserved and unspecified addresses are
refused -- checked in the resolver, so every redirect and every connection (not just the
first URL) is checked against the addresses actually dialled, and a DNS answer that changes
between check and connect cannot slip through. An admin may allow-list hosts (a SearxNG on
the LAN, an internal API); those skip the address check. Responses are read up to a size
cap and within a timeout.

We wrote this rather than take a library: aiohttp has no egress policy, and the
SSRF-guard packages we found wrap ``requests`` (sync) or check only the first URL.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

MAX_REDIRECTS = 5


class AddressRefused(Exception):
    """The URL's scheme or address is not one an ability may reach."""


NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo, NAT64, compatible)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if int(ip) >> 32 == 0 and int(ip) > 1:  # ::a.b.c.d, deprecated "IPv4-compatible"
        return ipaddress.IPv4Address(int(ip))
    return None


def _public(address: str) -> bool:
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
        address.split("%", 1)[0]
    )
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            ip = inner
    return ip.is_global and not ip.is_multicast


class GuardedResolver(AbstractResolver):
    """Resolves names, then refuses non-public addresses unless the host is allow-listed."""

    def __init__(self, allow_hosts: frozenset[str]) -> None:
        self._allow = allow_hosts
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if host.lower() in self._allow:
            return found
        refused = [r["host"] for r in found if not _public(r["host"])]
        if refused or not found:
            raise AddressRefused(f"{host} resolves to a non-public address")
        return found

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True)
class Fetched:
    status: int
    text: str
    truncated: bool


def check_url(url: str, allow_hosts: frozenset[str]) -> str:
    """``url`` if its scheme may be fetched; literal IPs are checked here too."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AddressRefused(f"only http(s) URLs may be fetched, not '{parts.scheme or url}'")
    host = parts.hostname.lower()
    if host not in allow_hosts:
        try:
            if not _public(host):
                raise AddressRefused(f"{host} is not a public address")
        except ValueError:
            pass  # a name: the resolver checks what it resolves to
    return url


async def fetch(
    method: str,
    url: str,
    *,
    allow_hosts: frozenset[str] = frozenset(),
    timeout_seconds: float = 10.0,
    max_bytes: int = 256 * 1024,
    **options: Any,
) -> Fetched:
    """One request under the rules above; ``AddressRefused`` or ``aiohttp.ClientError``."""
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(allow_hosts), use_dns_cache=False)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_seconds)
    ) as session:
        # Redirects are followed here, not by aiohttp: a literal IP in a Location header
        # never reaches a resolver, so each hop's URL is checked before it is requested.
        for _ in range(MAX_REDIRECTS + 1):
            check_url(url, allow_hosts)
            async with session.request(method, url, allow_redirects=False, **options) as response:
                location = response.headers.get("Location")
                if response.status in (301, 302, 303, 307, 308) and location:
                    target = _redirect_target(response.url, location, allow_hosts)
                    if target.origin() != response.url.origin():
                        # Another host: the tool's headers (its secrets) stay behind.
                        options = {k: v for k, v in options.items() if k != "headers"}
                    url = str(target)
                    if response.status == 303 or (
                        response.status in (301, 302) and method == "POST"
                    ):
                        method, options = (
                            "GET",
                            {k: v for k, v in options.items() if k == "headers"},
                        )
                    continue
                body = await response.content.read(max_bytes + 1)
                return Fetched(response.status, _decode(body[:max_bytes], response.charset),
                               len(body) > max_bytes)  # fmt: skip
    raise AddressRefused(f"more than {MAX_REDIRECTS} redirects")


def _redirect_target(current: URL, location: str, allow_hosts: frozenset[str]) -> URL:
    """Where a ``Location`` leads, checked like any URL we fetch: a redirect to another scheme
    (``file:``), a private address or an unparsable URL is ``AddressRefused``."""
    try:
        target = current.join(URL(location))
    except ValueError as exc:  # yarl: bad port, bad IPv6 literal...
        raise AddressRefused(f"a redirect to an unusable URL ({exc})") from None
    check_url(str(target), allow_hosts)
    return target


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know, named by the server
        return body.decode("utf-8", errors="replace")
