"""The sandbox market: each symbol's price is a pure function of (seed, symbol, time).

log(price) is a sum of smooth value-noise layers at time scales from one minute to about
45 days, with amplitudes growing like the square root of the scale, as a random walk's
would. Any instant's price is computed directly, without replaying history, so the same
window always yields the same candles, and candles close on real wall-clock boundaries.
An operator's price jump (`Market.jump`) multiplies every later instant's price, so REST
prices, fills, candles and the streams all see it from the same moment on.

The trade tape behind the `@trade` stream has one synthetic trade a second, at that second's
price; a trade's id is its epoch second.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

MINUTE_MS = 60_000
INTERVAL_MS = {
    "1s": 1000,
    "1m": MINUTE_MS,
    "3m": 3 * MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": 60 * MINUTE_MS,
    "2h": 120 * MINUTE_MS,
    "4h": 240 * MINUTE_MS,
    "6h": 360 * MINUTE_MS,
    "8h": 480 * MINUTE_MS,
    "12h": 720 * MINUTE_MS,
    "1d": 1440 * MINUTE_MS,
}
# (scale in minutes, amplitude of log-price); per-minute volatility about 0.1%.
_LAYERS = tuple((4.0**k, 0.0012 * math.sqrt(4.0**k)) for k in range(9))
# A candle's high and low come from a few instants per minute, at most this many in all.
_MAX_SAMPLES_PER_CANDLE = 32


@dataclass(frozen=True)
class SymbolSpec:
    symbol: str
    base: str
    quote: str
    anchor: Decimal
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    min_notional: Decimal
    base_volume: float


SYMBOLS = {
    spec.symbol: spec
    for spec in (
        SymbolSpec(
            "BTCUSDT",
            "BTC",
            "USDT",
            Decimal(60000),
            Decimal("0.01"),
            Decimal("0.00001"),
            Decimal("0.00001"),
            Decimal(5),
            12.0,
        ),
        SymbolSpec(
            "ETHUSDT",
            "ETH",
            "USDT",
            Decimal(3000),
            Decimal("0.01"),
            Decimal("0.0001"),
            Decimal("0.0001"),
            Decimal(5),
            150.0,
        ),
        SymbolSpec(
            "BNBUSDT",
            "BNB",
            "USDT",
            Decimal(600),
            Decimal("0.01"),
            Decimal("0.001"),
            Decimal("0.001"),
            Decimal(5),
            400.0,
        ),
        SymbolSpec(
            "SOLUSDT",
            "SOL",
            "USDT",
            Decimal(150),
            Decimal("0.01"),
            Decimal("0.001"),
            Decimal("0.001"),
            Decimal(5),
            2500.0,
        ),
    )
}


@lru_cache(maxsize=1 << 16)
def _lattice(seed: int, symbol: str, layer: int, index: int) -> float:
    digest = hashlib.blake2b(f"{seed}|{symbol}|{layer}|{index}".encode(), digest_size=8).digest()
    return struct.unpack(">Q", digest)[0] / 2**63 - 1.0  # uniform in [-1, 1)


def _noise(seed: int, symbol: str, layer: int, x: float) -> float:
    """Smooth value noise: hashed lattice values, cosine-interpolated."""
    left = math.floor(x)
    t = (1 - math.cos((x - left) * math.pi)) / 2
    a, b = _lattice(seed, symbol, layer, left), _lattice(seed, symbol, layer, left + 1)
    return a + (b - a) * t


@dataclass(frozen=True)
class Jump:
    after_ms: int  # instants strictly after it move, so a candle closed by then never changes
    factor: Decimal


@dataclass(frozen=True)
class TapeTrade:
    trade_id: int
    ms: int
    price: Decimal
    quantity: Decimal
    buyer_is_maker: bool  # the price ticked down: a seller hit the bid


class Market:
    def __init__(self, seed: int = 7) -> None:
        self.seed = seed
        self.jumps: dict[str, list[Jump]] = {}

    def jump(self, symbol: str, percent: Decimal, at_ms: int) -> None:
        """From `at_ms` on, the symbol's price is `percent` higher (lower when negative)."""
        factor = 1 + percent / 100
        if not factor.is_finite() or factor <= 0:
            raise ValueError("a price moves by a finite percentage above -100%")
        self.jumps.setdefault(symbol, []).append(Jump(at_ms, factor))

    def _factor(self, symbol: str, ms: int) -> Decimal:
        factor = Decimal(1)
        for jump in self.jumps.get(symbol, ()):
            if ms > jump.after_ms:
                factor *= jump.factor
        return factor

    def raw_price(self, symbol: str, ms: int) -> float:
        minutes = ms / MINUTE_MS
        log_move = sum(
            amplitude * _noise(self.seed, symbol, layer, minutes / scale)
            for layer, (scale, amplitude) in enumerate(_LAYERS)
        )
        return float(SYMBOLS[symbol].anchor) * math.exp(log_move)

    def price(self, symbol: str, ms: int) -> Decimal:
        tick = SYMBOLS[symbol].tick_size
        price = Decimal(repr(self.raw_price(symbol, ms))) * self._factor(symbol, ms)
        return max(tick, price.quantize(tick, rounding=ROUND_HALF_UP))

    def trade(self, symbol: str, second: int) -> TapeTrade:
        """The tape's trade of that epoch second: about a sixtieth of a minute's volume."""
        spec = SYMBOLS[symbol]
        price = self.price(symbol, second * 1000)
        shake = (_lattice(self.seed, symbol, 98, second) + 1) / 2  # [0, 1)
        quantity = Decimal(repr(spec.base_volume / 60 * (0.5 + shake))).quantize(spec.step_size)
        return TapeTrade(
            trade_id=second,
            ms=second * 1000,
            price=price,
            quantity=max(spec.min_qty, quantity),
            buyer_is_maker=price < self.price(symbol, (second - 1) * 1000),
        )

    def candle(self, symbol: str, interval: str, open_ms: int, now_ms: int) -> list[object]:
        """One 12-element kline row; a candle still forming ends at `now_ms`."""
        length = INTERVAL_MS[interval]
        if open_ms + length <= now_ms:  # closed: immutable, so cached
            return self._closed_candle(symbol, interval, open_ms)
        return self._build_candle(symbol, interval, open_ms, now_ms)

    @lru_cache(maxsize=100_000)  # noqa: B019 - one Market per server, kept for its lifetime
    def _closed_candle(self, symbol: str, interval: str, open_ms: int) -> list[object]:
        return self._build_candle(symbol, interval, open_ms, open_ms + INTERVAL_MS[interval])

    def _build_candle(self, symbol: str, interval: str, open_ms: int, now_ms: int) -> list[object]:
        spec = SYMBOLS[symbol]
        length = INTERVAL_MS[interval]
        close_ms = open_ms + length - 1
        last_ms = min(open_ms + length, now_ms)
        samples = min(_MAX_SAMPLES_PER_CANDLE, 2 * length // MINUTE_MS + 2)
        step = max(1, (last_ms - open_ms) // samples)
        instants = [*range(open_ms, last_ms, step), last_ms]
        prices = [self.price(symbol, t) for t in instants]
        # A forming candle has at least a whole candle's volume, a minute's at most.
        minutes = max(min(1.0, length / MINUTE_MS), (last_ms - open_ms) / MINUTE_MS)
        shake = (_lattice(self.seed, symbol, 99, open_ms // MINUTE_MS) + 1) / 2  # [0, 1)
        volume = Decimal(repr(spec.base_volume * minutes * (0.5 + shake))).quantize(spec.step_size)
        quote_volume = (volume * prices[-1]).quantize(Decimal("0.00000001"))
        trades = int(float(volume) * 40) + 1
        return [
            open_ms,
            str(prices[0]),
            str(max(prices)),
            str(min(prices)),
            str(prices[-1]),
            str(volume),
            close_ms,
            str(quote_volume),
            trades,
            str((volume / 2).quantize(spec.step_size)),
            str((quote_volume / 2).quantize(Decimal("0.00000001"))),
            "0",
        ]

    def klines(
        self,
        symbol: str,
        interval: str,
        now_ms: int,
        start_ms: int | None,
        end_ms: int | None,
        limit: int,
    ) -> list[list[object]]:
        """Binance's window rules: from startTime forward, else back from endTime (or now)."""
        length = INTERVAL_MS[interval]
        last_open = (min(end_ms, now_ms) if end_ms is not None else now_ms) // length * length
        if start_ms is not None:
            first_open = -(-start_ms // length) * length  # first candle opening at/after it
            opens = range(first_open, min(last_open, first_open + (limit - 1) * length) + 1, length)
        else:
            opens = range(max(0, last_open - (limit - 1) * length), last_open + 1, length)
        return [self.candle(symbol, interval, t, now_ms) for t in opens]
