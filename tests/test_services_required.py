"""The rule that decides whether an absent MariaDB or Redis fails the run or skips its tests."""

from __future__ import annotations

import pytest

from tests.conftest import services_required


@pytest.mark.parametrize(
    "ci", ["true", "True", "TRUE", "1", "yes", "on", "github-actions", " true "]
)
def test_any_ci_value_but_false_or_zero_requires_the_services(ci: str) -> None:
    assert services_required({"CI": ci}) is True


@pytest.mark.parametrize("ci", ["", "false", "False", "FALSE", "0", " 0 "])
def test_an_empty_false_or_zero_ci_lets_absent_services_skip(ci: str) -> None:
    assert services_required({"CI": ci}) is False


def test_no_ci_at_all_lets_absent_services_skip() -> None:
    assert services_required({}) is False


@pytest.mark.parametrize("ci", [None, "", "false", "0"])
def test_require_services_1_requires_them_whatever_ci_says(ci: str | None) -> None:
    environ = {"REQUIRE_SERVICES": "1"} | ({} if ci is None else {"CI": ci})
    assert services_required(environ) is True


@pytest.mark.parametrize("value", ["", "0", "true"])
def test_require_services_asks_for_exactly_1(value: str) -> None:
    assert services_required({"REQUIRE_SERVICES": value}) is False
