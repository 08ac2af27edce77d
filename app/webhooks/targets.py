"""Where a webhook may be sent: http(s) URLs only and, in production, https to public
addresses only, checked when the endpoint is registered and again at every delivery against
the address actually connected to, so that DNS pointing elsewhere later (rebinding) cannot
reach the internal network or a cloud metadata service."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

import httpx

from app.core.settings import Environment, Settings
from app.models.webhooks import MAX_URL_LENGTH

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 prefix that carries an IPv4 address in its last 32 bits (RFC 6052's NAT64).
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# httpx's default of 100 connections at once, every one of them kept open after its answer
# (httpx keeps 20) for the next job's deliveries; closed after 5 s unused.
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=100, keepalive_expiry=5.0)


class TargetRefused(httpx.TransportError):
    """This URL may not receive webhooks; a transport error, so a delivery counts it as a
    failed attempt like a refused connection."""


def shape_problem(url: str) -> str | None:
    """What makes `url` unusable anywhere (not http(s), too long, no host), or None."""
    if len(url) > MAX_URL_LENGTH:
        return f"longer than {MAX_URL_LENGTH} characters"
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        return f"not a URL: {exc}"
    if parsed.scheme not in ("http", "https"):
        return "not an http(s) URL"
    if not parsed.host:
        return "no host"
    return None


def is_public(address: IPAddress) -> bool:
    """Whether an address is on the public internet: not loopback, private, link-local (the
    metadata services' 169.254.169.254), shared, reserved or multicast, including an IPv4
    address carried inside an IPv6 one."""
    embedded = _embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else []
    return (
        address.is_global
        and not address.is_multicast
        and all(is_public(inner) for inner in embedded)
    )


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [inner for inner in found if inner is not None]


@dataclass(frozen=True)
class TargetPolicy:
    """`public_only` (production): https, and every address the host resolves to public."""

    public_only: bool

    @classmethod
    def of(cls, settings: Settings) -> TargetPolicy:
        return cls(public_only=settings.environment is Environment.production)

    async def check(self, url: str) -> None:
        """Raise TargetRefused unless `url` may receive webhooks now (resolving its host)."""
        if self.public_only:
            await public_address(httpx.URL(url))

    def transport(self) -> httpx.AsyncBaseTransport:
        inner = httpx.AsyncHTTPTransport(limits=LIMITS)
        return PublicAddressTransport(inner) if self.public_only else inner


async def public_address(url: httpx.URL) -> str:
    """The address to connect to for `url`: its host resolved, every address public."""
    if url.scheme != "https":
        raise TargetRefused("production sends webhooks over https only")
    port = url.port or 443
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            url.host, port, type=socket.SOCK_STREAM
        )
    except socket.gaierror as exc:
        raise TargetRefused(f"{url.host} does not resolve") from exc
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    refused = sorted({str(address) for address in addresses if not is_public(address)})
    if refused or not addresses:
        raise TargetRefused(
            f"{url.host} resolves to an address that is not public: {', '.join(refused)}"
        )
    return str(addresses[0])


class PublicAddressTransport(httpx.AsyncBaseTransport):
    """Connects to the checked address itself, not to the name (which could resolve again,
    elsewhere): the URL's host becomes that address while the Host header and the TLS server
    name (certificate check included) stay the original host's."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        request.url = request.url.copy_with(host=await public_address(request.url))
        request.extensions = {**request.extensions, "sni_hostname": host}
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()
