"""Idempotent writes for replicated ICP outcalls (13-34 identical copies at once).

The first copy to insert the (api key, Idempotency-Key) row runs the request; the database's
unique constraint decides which one that is, across every API process. The other copies poll
the row in fresh transactions (REPEATABLE READ would hide its completion) and replay the
stored status and body byte for byte. A different request under the same key is a 409.

The in-progress row is a lease (IDEMPOTENCY_LEASE_S), so a process that dies mid-request does
not lock its key for a day: a copy that finds the lease over takes the row over (see
service.take_over) and runs the request; the dead holder's id no longer matches any row.

Stored bodies are encrypted with the credential keyring: a body may hold a secret shown once,
such as a new API key.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Callable

from sqlalchemy.exc import IntegrityError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api_keys.assertions import check_principal_assertion
from app.api_keys.schemas import Scope as KeyScope
from app.audit import WRITE_METHODS
from app.core.db import utcnow
from app.core.errors import InvalidPrincipalAssertion, error_response
from app.idempotency import repository, service
from app.models import IdempotencyRecord
from app.runtime import Runtime

log = logging.getLogger(__name__)

VALID_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_POLL_INTERVAL_S = 0.05
# Not results but states of the moment: a later copy must get its own chance to run.
_NOT_STORED = frozenset({429})


def request_fingerprint(scope: Scope, body: bytes) -> str:
    # The principal is part of the request: one marketplace key reusing an Idempotency-Key
    # for another renter must not be handed the first renter's response.
    principal = Headers(scope=scope).get("x-principal-id", "")
    digest = hashlib.sha256()
    for part in (
        scope["method"],
        scope["path"],
        scope.get("query_string", b"").decode(),
        principal,
    ):
        digest.update(part.encode() + b"\0")
    digest.update(body)
    return digest.hexdigest()


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, runtime: Callable[[], Runtime]) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        key = headers.get("idempotency-key")
        if key is None:
            await self.app(scope, receive, send)
            return
        if not VALID_IDEMPOTENCY_KEY.match(key):
            response = error_response(
                422,
                "VALIDATION_ERROR",
                "Idempotency-Key must be 1-255 visible ASCII characters",
                [{"loc": "header.Idempotency-Key", "message": "invalid format"}],
            )
            await response(scope, receive, send)
            return
        runtime = self.runtime()
        caller = await runtime.authenticator.authenticate(headers.get("x-api-key"))
        if caller is None:
            # Nothing to scope the key to; the route answers 401 and changes nothing.
            await self.app(scope, receive, send)
            return
        if caller.scope is KeyScope.marketplace:
            if "x-principal-id" not in headers:
                # Every marketplace write acts for a principal: without one it is refused
                # whatever the assertion mode, and must not hold the key against the copies
                # that name one.
                await self.app(scope, receive, send)
                return
            # Judged before the key is claimed: a copy whose assertion fails is answered by
            # the route.
            try:
                check_principal_assertion(runtime.assertion_verifier, caller, scope)
            except InvalidPrincipalAssertion:
                # Neither claimed nor replayed: a forged copy must not hold the key against the
                # genuine ones, nor read their answer. The route answers 401 (or 422 without a
                # principal) and audits it.
                await self.app(scope, receive, send)
                return
        fingerprint = request_fingerprint(scope, scope.get("botmarket.body", b""))
        record_id = await self._claim_or_replay(
            runtime, caller.api_key_id, key, fingerprint, scope, receive, send
        )
        if record_id is not None:
            await self._run_and_store(runtime, record_id, scope, receive, send)

    async def _claim_or_replay(
        self,
        runtime: Runtime,
        api_key_id: str,
        key: str,
        fingerprint: str,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> str | None:
        """Return the id of the record this copy now owns, or answer the copy and return None."""
        deadline = time.monotonic() + runtime.settings.idempotency_wait_s
        while True:
            now = utcnow()
            async with runtime.sessionmaker() as session:
                try:
                    record_id = await service.claim(
                        session, runtime.settings, api_key_id, key, fingerprint, now
                    )
                    await session.commit()
                    return record_id
                except IntegrityError:
                    await session.rollback()
                existing = await repository.find(session, api_key_id, key)
                if existing is not None and existing.expires_at < now:
                    # Its holder died mid-request (lease over) or its lifetime is over.
                    taken = await service.take_over(
                        session, runtime.settings, existing.id, api_key_id, key, fingerprint, now
                    )
                    if taken is not None:
                        await session.commit()
                        return taken
                    await session.rollback()
                    continue  # another copy took it over: wait for that one
            if existing is None:
                continue  # the first copy failed and gave the key back: try to claim it
            if existing.request_fingerprint != fingerprint:
                response = error_response(
                    409,
                    "IDEMPOTENCY_KEY_REUSED",
                    "this Idempotency-Key was used for a different request",
                )
                await response(scope, receive, send)
                return None
            if existing.status == "completed" and existing.response_body is not None:
                await self._replay(runtime, existing, send)
                return None
            if time.monotonic() > deadline:
                response = error_response(
                    409,
                    "IDEMPOTENCY_IN_PROGRESS",
                    "the first request with this Idempotency-Key is still running",
                    headers={"Retry-After": "1"},
                )
                await response(scope, receive, send)
                return None
            await asyncio.sleep(_POLL_INTERVAL_S)

    async def _replay(self, runtime: Runtime, record: IdempotencyRecord, send: Send) -> None:
        assert record.response_body is not None and record.response_status is not None
        body = runtime.keyring.decrypt(record.response_body.decode()).encode("latin-1")
        headers = [(b"idempotent-replayed", b"true"), (b"content-length", str(len(body)).encode())]
        if record.response_content_type:
            headers.append((b"content-type", record.response_content_type.encode()))
        await send(
            {"type": "http.response.start", "status": record.response_status, "headers": headers}
        )
        await send({"type": "http.response.body", "body": body})

    async def _run_and_store(
        self, runtime: Runtime, record_id: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.app(scope, receive, capture)
        except BaseException:
            await self._release(runtime, record_id)
            raise
        assert start is not None
        body = b"".join(chunks)
        status = int(start["status"])
        if status >= 500 or status in _NOT_STORED:
            await self._release(runtime, record_id)
        else:
            content_type = Headers(raw=start.get("headers", [])).get("content-type", "")
            # latin-1 maps every byte to one code point, so any body survives the round trip.
            sealed = runtime.keyring.encrypt(body.decode("latin-1")).encode()
            async with runtime.sessionmaker() as session:
                stored = await service.complete(
                    session,
                    runtime.settings,
                    record_id,
                    status,
                    content_type,
                    sealed,
                    runtime.keyring.primary_key_id,
                    utcnow(),
                )
                await session.commit()
            if not stored:
                log.warning(
                    "idempotency lease ran out before the request finished; another copy "
                    "took the key over, and its response is the one replayed",
                    extra={"idempotency_record_id": record_id},
                )
        await send(start)
        await send({"type": "http.response.body", "body": body})

    async def _release(self, runtime: Runtime, record_id: str) -> None:
        async with runtime.sessionmaker() as session:
            await repository.remove(session, record_id)
            await session.commit()
