from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.core import settings as settings_module
from app.core.settings import Settings


@pytest.mark.parametrize("value", ["", "changeme", "CHANGEME"])
def test_production_refuses_missing_or_placeholder_fernet_keys(value: str) -> None:
    with pytest.raises(ValidationError, match="FERNET_KEYS"):
        Settings(environment="production", fernet_keys=value)


def test_development_creates_a_key_once_and_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    key_file = tmp_path / "var" / "fernet.key"
    monkeypatch.setattr(settings_module, "DEV_FERNET_KEY_FILE", key_file)
    first = Settings(fernet_keys="").fernet_keyring_text()
    second = Settings(fernet_keys="").fernet_keyring_text()
    assert first == second == key_file.read_text().strip()
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert sum("FERNET_KEYS is not set" in r.getMessage() for r in caplog.records) == 1


def test_an_idempotency_lease_shorter_than_the_wait_is_refused() -> None:
    # Copies still waiting for a live first copy would take its key over and run it twice.
    with pytest.raises(ValidationError, match="IDEMPOTENCY_LEASE_S"):
        Settings(idempotency_lease_s=40, idempotency_wait_s=45)
    assert Settings().idempotency_lease_s == 60
