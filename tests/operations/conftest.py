"""What the operations tests share: the deploy/ files they read, and Debian's promtool."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from tests.conftest import unavailable
from tests.helpers import ROOT

DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


@pytest.fixture(scope="session")
def promtool() -> str:
    """Debian's promtool (`make test` installs the prometheus package); without it the alert
    tests skip, or fail where services are required (CI)."""
    found = shutil.which("promtool")
    if found is None:
        unavailable("promtool is missing (apt-get install -y --no-install-recommends prometheus)")
    return found


def sample(name: str, **labels: str) -> float:
    """A metric's value in this process (0 before its first sample)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
