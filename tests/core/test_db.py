"""SQL parameters carry secrets (ciphertexts, key digests, principals): no log line or error
message of the engine shows them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.core.db import create_engine

SECRET = "bmk_not-for-the-logs"


async def test_sql_parameters_are_never_logged_nor_in_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", pool=False)
    engine.echo = True  # what an operator turns on to debug: statements and their parameters
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE keys (digest TEXT UNIQUE)"))
            insert = text("INSERT INTO keys (digest) VALUES (:digest)")
            with caplog.at_level(logging.INFO, logger="sqlalchemy.engine"):
                await connection.execute(insert, {"digest": SECRET})
                with pytest.raises(DBAPIError) as failed:
                    await connection.execute(insert, {"digest": SECRET})
    finally:
        await engine.dispose()
    assert "INSERT INTO keys" in caplog.text  # the statements are logged, their values not
    assert SECRET not in caplog.text
    assert SECRET not in str(failed.value)
