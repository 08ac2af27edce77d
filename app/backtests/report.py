"""A backtest as one self-contained HTML file: the summary, the equity and drawdown chart as
inline SVG (matplotlib, no network), and every trade."""

from __future__ import annotations

import html
import io
from datetime import datetime
from decimal import Decimal
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: render to a file

import matplotlib.pyplot as plt

from app.performance.figures import drawdown_percent

SUMMARY = (
    ("total_return", "total return"),
    ("buy_and_hold_return", "buy and hold return"),
    ("max_drawdown", "max drawdown"),
    ("sharpe", "Sharpe (annualised)"),
    ("sortino", "Sortino (annualised)"),
    ("win_rate", "win rate"),
    ("profit_factor", "profit factor"),
    ("trades", "trades (fills)"),
    ("exposure", "exposure"),
    ("fees_quote", "fees paid (quote)"),
    ("final_equity", "final equity"),
    ("llm_cost_usd", "LLM cost (USD)"),
)
_TRADE_COLUMNS = (
    "time",
    "side",
    "status",
    "quantity",
    "price",
    "fee_quote",
    "realized_pnl",
    "reason",
)


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    metrics = result["metrics"]
    rows = [
        (label, "-" if metrics.get(key) is None else str(metrics[key])) for key, label in SUMMARY
    ]
    return [*rows, ("LLM coverage", str(result["llm"]["coverage"]))]


def chart_svg(result: dict[str, Any]) -> str:
    times = [datetime.fromisoformat(t) for t, _ in result["equity"]]
    equity = [float(Decimal(e)) for _, e in result["equity"]]  # a picture, not money
    drawdown = drawdown_percent(equity)
    figure, (top, bottom) = plt.subplots(
        2, 1, sharex=True, figsize=(10, 6), gridspec_kw={"height_ratios": [3, 1]}
    )
    top.plot(times, equity, color="#1f77b4", linewidth=1)
    top.set_ylabel("equity (quote)")
    top.grid(alpha=0.3)
    bottom.fill_between(times, drawdown, 0, color="#d62728", alpha=0.4)
    bottom.set_ylabel("drawdown %")
    bottom.grid(alpha=0.3)
    figure.autofmt_xdate()
    figure.tight_layout()
    out = io.StringIO()
    # A fixed hash salt and no date make the same result give the same file.
    plt.rcParams["svg.hashsalt"] = "botmarket"
    figure.savefig(out, format="svg", metadata={"Date": None})
    plt.close(figure)
    svg = out.getvalue()
    return svg[svg.index("<svg") :]


def render_html(title: str, result: dict[str, Any]) -> str:
    cell = lambda value: f"<td>{html.escape(str(value))}</td>"  # noqa: E731
    summary = "".join(
        f"<tr><th>{html.escape(k)}</th>{cell(v)}</tr>" for k, v in summary_rows(result)
    )
    trades = "".join(
        "<tr>"
        + "".join(cell(t.get(c, "") if t.get(c) is not None else "") for c in _TRADE_COLUMNS)
        + "</tr>"
        for t in result["trades"]
    )
    header = "".join(f"<th>{c}</th>" for c in _TRADE_COLUMNS)
    warnings = "".join(f"<p class=warn>{html.escape(w)}</p>" for w in result.get("warnings", []))
    annualisation = result["metrics"].get("annualisation", {})
    window = html.escape(
        f"{result['symbol']} {result['timeframe']}, {result['start']} to {result['end']}, "
        f"starting with {result['quote_amount']} quote"
    )
    basis = html.escape(
        f"{annualisation.get('basis', '')}, {annualisation.get('periods_per_year', '')} "
        "periods a year"
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }}
.warn {{ color: #a60; }}
</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>{window}. Ratios are fractions (0.05 is 5%); Sharpe and Sortino: {basis}.</p>
{warnings}
<table>{summary}</table>
{chart_svg(result)}
<h2>Trades</h2>
<table><tr>{header}</tr>{trades}</table>
</body></html>
"""
