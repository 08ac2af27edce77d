"""Our own exchange errors. Only TemporaryError (and RateLimited, after its wait) is retried.

Every python-binance exception and transport error becomes one of these at the boundary, so
no caller has to know Binance's error codes.
"""

from __future__ import annotations

import asyncio

import aiohttp
from binance.exceptions import BinanceAPIException, BinanceRequestException


class ExchangeError(Exception):
    """Base of every exchange failure; `code` is Binance's when there is one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class InvalidOrder(ExchangeError):
    """The exchange refused the order as sent (filters, parameters, unknown symbol)."""


class InsufficientBalance(InvalidOrder):
    pass


class OrderNotFound(ExchangeError):
    pass


class AuthError(ExchangeError):
    """Bad key, bad signature or missing permission: retrying cannot help."""


class TemporaryError(ExchangeError):
    """Timeouts, 5xx, clock drift: the same call may succeed later."""


class UnknownOutcome(TemporaryError):
    """An order may or may not exist (timeout, 5xx): reconcile before sending again."""


class RateLimited(TemporaryError):
    def __init__(self, message: str, retry_after_s: float, code: int | None = None) -> None:
        super().__init__(message, code)
        self.retry_after_s = retry_after_s


_AUTH_CODES = {-1002, -1022, -2014, -2015}
_NOT_FOUND_CODES = {-2011, -2013}
_TEMPORARY_CODES = {-1000, -1001, -1006, -1007, -1008, -1021}


def retry_after_of(headers: object, default: float = 60.0) -> float:
    value = getattr(headers, "get", lambda _k: None)("Retry-After")
    try:
        return float(value) if value is not None else default
    except ValueError:
        return default


def translate(exc: BaseException) -> ExchangeError:
    """Map a python-binance or transport exception to our tree."""
    if isinstance(exc, ExchangeError):
        return exc
    if isinstance(exc, BinanceAPIException):
        message = f"binance {exc.status_code} {exc.code}: {exc.message}"
        if exc.status_code in (418, 429):
            headers = getattr(exc.response, "headers", {})
            return RateLimited(message, retry_after_of(headers), exc.code)
        if exc.status_code >= 500:
            return UnknownOutcome(message, exc.code)
        if exc.code in _AUTH_CODES or exc.status_code in (401, 403):
            return AuthError(message, exc.code)
        if exc.code in _NOT_FOUND_CODES:
            return OrderNotFound(message, exc.code)
        if exc.code in _TEMPORARY_CODES:
            return TemporaryError(message, exc.code)
        if exc.code == -2010 and "insufficient balance" in (exc.message or "").lower():
            return InsufficientBalance(message, exc.code)
        return InvalidOrder(message, exc.code)
    if isinstance(exc, BinanceRequestException):
        return UnknownOutcome(f"binance answered something unreadable: {exc.message}")
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ClientError | OSError):
        return UnknownOutcome(f"transport error: {type(exc).__name__}: {exc}")
    return ExchangeError(f"unexpected {type(exc).__name__}: {exc}")
