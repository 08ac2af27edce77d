"""Console sessions: an API key exchanged for a server-side session the browser holds a token of.

The browser never holds the key: sign-in reads it once and keeps a random session token in an
HttpOnly cookie; the table keeps only the token's SHA-256. Each request resolves the token to
its key's digest (cached a few seconds, like the keys) and the key to its caller through the
API key authenticator's cache: a revoked key ends its sessions as soon as it stops the key's
API calls (at once with Redis, within the key cache's TTL without). Sign-out deletes the row
and evicts it here and, through Redis, in every other API process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api_keys.authenticator import ApiKeyAuthenticator, Caller
from app.api_keys.schemas import Scope
from app.console import repository
from app.core.cache import TtlCache
from app.core.db import session_scope
from app.core.evictions import Evictions, channel_of
from app.models import ConsoleSession

# 256 bits from the system's CSPRNG, URL-safe base64 (43 characters).
_TOKEN_BYTES = 32
_MAX_TOKEN_LENGTH = 64
CONSOLE_SCOPES = frozenset({Scope.developer, Scope.admin})


class SignInRefused(Exception):
    """The key given at sign-in cannot open a console session; the message says why."""


@dataclass(frozen=True)
class SignedIn:
    caller: Caller
    token_digest: str
    # Sent back with every state-changing request: a page of another site cannot read it.
    csrf_token: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token_of(secret: str) -> str:
    """The CSRF token bound to a session token (or to a sign-in form's own random value):
    derived, so that nothing more is stored, and useless without the cookie it came from."""
    return hmac.new(secret.encode(), b"botmarket-console-csrf", hashlib.sha256).hexdigest()


def csrf_matches(secret: str | None, sent: str | None) -> bool:
    if not secret or not sent:
        return False
    return hmac.compare_digest(csrf_token_of(secret).encode(), sent.encode())


class ConsoleSessions:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        authenticator: ApiKeyAuthenticator,
        *,
        ttl_s: float,
        database_url: str,
        redis: Redis | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._authenticator = authenticator
        # token digest -> (key digest, expiry), or None for an unknown token
        self._cache: TtlCache[str, tuple[str, datetime] | None] = TtlCache(ttl_s)
        self.changes = Evictions(
            redis,
            channel_of(database_url, "console-session-ended"),
            self._cache.forget,
            self._cache.clear,
        )

    async def sign_in(
        self, session: AsyncSession, api_key: str, now: datetime, lifetime: timedelta
    ) -> tuple[str, Caller]:
        """A new session's token for the key and the key's caller, the session added to the
        caller's transaction; refused for an unknown, revoked or marketplace key."""
        caller = await self._authenticator.authenticate(api_key.strip())
        if caller is None:
            raise SignInRefused("This API key is unknown or revoked.")
        if caller.scope not in CONSOLE_SCOPES:
            raise SignInRefused(
                "Marketplace keys cannot sign in to the console: renters use their "
                "marketplace's own pages. Sign in with a developer or admin key."
            )
        # Sessions nobody came back to are cleared here rather than by a schedule.
        await repository.delete_expired_sessions(session, now)
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        session.add(
            ConsoleSession(
                token_digest=_digest(token), api_key_id=caller.api_key_id, expires_at=now + lifetime
            )
        )
        return token, caller

    async def resolve(self, token: str | None, now: datetime) -> SignedIn | None:
        """Who holds this session token, or None when it is unknown, past its time or its
        key is revoked (the session is then deleted)."""
        if not token or len(token) > _MAX_TOKEN_LENGTH:
            return None
        digest = _digest(token)
        found = await self._cache.get(digest, lambda: self._load(digest))
        if found is None:
            return None
        key_digest, expires_at = found
        caller = await self._authenticator.by_digest(key_digest) if expires_at > now else None
        if caller is None:
            async with session_scope(self._sessionmaker) as session:
                await self.end(session, token)
            return None
        return SignedIn(caller, digest, csrf_token_of(token))

    async def _load(self, digest: str) -> tuple[str, datetime] | None:
        async with self._sessionmaker() as session:
            return await repository.session_key(session, digest)

    async def end(self, session: AsyncSession, token: str) -> None:
        """Delete the session in the caller's transaction; every process forgets it once it
        commits."""
        digest = _digest(token)
        await repository.delete_session(session, digest)
        self.changes.after_commit(session, digest)

    def stop(self) -> None:
        self.changes.stop()

    async def listen_for_changes(self, retry_s: float = 1.0) -> None:
        """Forget the sessions other processes end, until stop()."""
        await self.changes.listen(retry_s)
