"""The schema's migrations: alembic's configuration and the upgrade every entry point runs."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config


def alembic_config(database_url: str | None = None) -> Config:
    """Alembic's configuration, its scripts found in the installed `migrations` package.

    Not alembic.ini, which is read from the working directory and is not in the wheel: the
    Docker image, and any install that is not an editable checkout, has no such file.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("migrations")))
    if database_url:
        config.set_main_option("sqlalchemy.url", database_url)
    return config


@cache
def head_revision() -> str:
    """The revision this code's migrations lead to: what `botmarket migrate` leaves."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the migrations have no head"
    return head


def migrate(database_url: str | None = None, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)
