"""The alert rules: promtool accepts them and the scrape configuration, and their unit tests
(deploy/prometheus/alerts_test.yml) pass, with a firing and a quiet case for every alert."""

from __future__ import annotations

import subprocess

from tests.operations.conftest import ALERT_TESTS, ALERTS, DEPLOY, alert_rules, load_yaml

SEVERITIES = {"critical", "warning", "info"}
# What the operators asked to be told of, by severity.
EXPECTED = {
    "critical": {
        "ApiDown",
        "NoWorker",
        "NoBeat",
        "OrdersUnknownPastLease",
        "BinanceBan",
        "ApiErrorRate",
    },
    "warning": {
        "QueueBacklog",
        "ApiLatencyP99",
        "LlmBudgetExhausted",
        "WebhookEndpointFailing",
        "StaleRefusals",
    },
    "info": {"Deployed", "MigrationDone"},
}


def promtool_run(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=DEPLOY / "prometheus", capture_output=True, text=True, timeout=120
    )


def test_promtool_accepts_the_rules(promtool: str) -> None:
    checked = promtool_run(promtool, "check", "rules", ALERTS.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in checked.stdout


def test_the_rules_unit_tests_pass(promtool: str) -> None:
    tested = promtool_run(promtool, "test", "rules", ALERT_TESTS.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_promtool_accepts_the_scrape_configuration(promtool: str) -> None:
    # Syntax only: its rule file's path is the container's (/etc/prometheus/alerts.yml).
    checked = promtool_run(promtool, "check", "config", "--syntax-only", "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_has_a_severity_and_those_asked_for_exist() -> None:
    by_severity: dict[str, set[str]] = {severity: set() for severity in SEVERITIES}
    for rule in alert_rules():
        by_severity[rule["labels"]["severity"]].add(rule["alert"])
    assert by_severity == EXPECTED


def test_every_alert_is_tested_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in load_yaml(ALERT_TESTS)["tests"]:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert firing == names
    assert quiet == names
