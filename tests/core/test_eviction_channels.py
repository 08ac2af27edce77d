"""Eviction channels are per deployment: Redis pub/sub ignores the database index, so two
deployments (or two test runs) sharing a server must not hear each other's evictions."""

from app.core.evictions import channel_of


def test_a_deployment_is_told_apart_by_its_database_not_its_password() -> None:
    one = "mysql+asyncmy://app:secret@db:3306/botmarket"
    assert channel_of(one, "catalogue-changed") == channel_of(
        "mysql+asyncmy://app:rotated@db:3306/botmarket", "catalogue-changed"
    )
    others = [
        "mysql+asyncmy://app:secret@db:3306/botmarket_staging",
        "mysql+asyncmy://app:secret@db2:3306/botmarket",
        "sqlite+aiosqlite:///./var/botmarket.db",
    ]
    channels = {channel_of(url, "catalogue-changed") for url in [one, *others]}
    assert len(channels) == 4
    assert channel_of(one, "catalogue-changed") != channel_of(one, "api-key-changed")
    assert "secret" not in channel_of(one, "api-key-changed")
