"""The PromQL of the dashboards and the alerts, reduced to the metric names it reads."""

from __future__ import annotations

import json
import re

from tests.operations.conftest import DASHBOARDS, alert_rules

# Strings first (a regex matcher may hold anything), then what names labels rather than
# series: matchers in braces, label lists of by/without/on/ignoring/group_*, ranges and offsets.
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_LABEL_LISTS = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_RANGES = re.compile(r"\[[^\]]*\]")
# Not the unit of a duration or the exponent of a number (`offset 30m`, `1e3`).
_IDENTIFIER = re.compile(r"(?<![A-Za-z0-9_:.])[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "offset", "bool", "inf", "nan", "atan2"}


def metric_names(expr: str) -> set[str]:
    """The series an expression selects: identifiers that are neither a function or
    aggregation (followed by `(`) nor an operator keyword."""
    text = _STRINGS.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _LABEL_LISTS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    names: set[str] = set()
    for found in _IDENTIFIER.finditer(text):
        follows = text[found.end() :].lstrip()[:1]
        word = found.group()
        if follows != "(" and word.lower() not in _KEYWORDS:
            names.add(word)
    return names


def dashboard_exprs() -> dict[str, str]:
    """Every panel query of every dashboard, by `file: panel title`."""
    exprs: dict[str, str] = {}
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                exprs[f"{path.name}: {panel['title']} ({target['refId']})"] = target["expr"]
    return exprs


def alert_exprs() -> dict[str, str]:
    return {f"alerts.yml: {rule['alert']}": rule["expr"] for rule in alert_rules()}
