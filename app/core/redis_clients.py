"""How every process connects to Redis: its client for REDIS_URL, and the TLS options of a
`rediss://` URL, the same for redis-py (API, workers) and for kombu (Celery's broker).

A password travels in the URL (`redis://:password@host:6379/0`, or `user:password@` for an
ACL user), which both libraries read. Over `rediss://`, kombu would connect without checking
the server's certificate unless given options: these always ask for the check, against
REDIS_SSL_CA_CERTS when that is set (a private CA), else the system's trusted roots.
"""

from __future__ import annotations

import ssl
from typing import Any

from redis.asyncio import Redis

from app.core.settings import Settings


def tls_options(url: str, ca_certs: str | None) -> dict[str, Any]:
    """redis-py's connection options for `url`: none unless it is a `rediss://` URL."""
    if not url.startswith("rediss://"):
        return {}
    options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    if ca_certs:
        options["ssl_ca_certs"] = ca_certs
    return options


def broker_tls(settings: Settings) -> dict[str, Any]:
    """Celery's `broker_use_ssl` (kombu's `ssl`) for the configured broker."""
    return tls_options(settings.broker_url, settings.redis_ssl_ca_certs)


def open_redis(settings: Settings) -> Redis | None:
    """The process's client for REDIS_URL, or None without one."""
    if not settings.redis_url:
        return None
    return Redis.from_url(
        settings.redis_url, **tls_options(settings.redis_url, settings.redis_ssl_ca_certs)
    )
