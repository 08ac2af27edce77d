"""The wheel the Docker image installs is complete: `botmarket migrate` from an installed,
non-editable copy (no source tree, no alembic.ini in the working directory) builds the schema."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from app.models import Base

ROOT = Path(__file__).resolve().parent.parent


def build_stage_sources() -> list[str]:
    """What the Dockerfile's build stage copies into the directory it builds the wheel from."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    build_stage = re.split(r"^FROM ", dockerfile, flags=re.M)[1]
    sources = []
    for line in re.findall(r"^COPY (.+)$", build_stage, flags=re.M):
        sources += line.split()[:-1]
    return sources


@pytest.mark.slow
def test_migrate_from_the_installed_wheel_outside_the_source_tree(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in build_stage_sources():
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, source / name)
    wheels, installed, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), "."],
        cwd=source,
        check=True,
    )
    (wheel,) = wheels.glob("botmarket-*.whl")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--quiet",
            "--target",
            installed,
            wheel,
        ],
        check=True,
    )
    # The console serves its pages, script and stylesheet from the installed package.
    console = installed / "app" / "console"
    for shipped in ("templates/base.html", "templates/bot.html", "static/console.js"):
        assert (console / shipped).is_file(), shipped
    database = elsewhere / "fresh.db"
    # Dependencies come from this interpreter's environment, botmarket only from the wheel:
    # -S skips the environment's .pth files, among them the editable install of this checkout,
    # which would otherwise supply whatever the wheel lacks.
    dependencies = sysconfig.get_paths()["purelib"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(installed), dependencies]),
        "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
    }
    migrate = subprocess.run(
        [sys.executable, "-S", "-m", "app.cli", "migrate"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert migrate.returncode == 0, migrate.stderr
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert set(Base.metadata.tables) | {"alembic_version"} <= tables
