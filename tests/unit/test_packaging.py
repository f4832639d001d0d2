"""The wheel carries sql/ and web/, so an installed pts works outside the checkout."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(180)
def test_wheel_ships_sql_and_web(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    assert uv is not None, "uv is needed to build the wheel (see README)"
    subprocess.run(
        [uv, "build", "--wheel", "--out-dir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=170,
    )
    (wheel,) = tmp_path.glob("pts-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "pts/_data/sql/schema.sql" in names
    assert "pts/_data/sql/queries.sql" in names
    migrations = {n for n in names if n.startswith("pts/_data/sql/migrations/")}
    assert {p.name for p in (ROOT / "sql" / "migrations").glob("*.sql")} == {
        Path(n).name for n in migrations
    }
    assert any(n.startswith("pts/_data/web/") for n in names)
    assert "pts/store/base.py" in names


def test_resources_prefer_packaged_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pts.resources as resources

    packaged = tmp_path / "pts"
    (packaged / "_data" / "sql").mkdir(parents=True)
    monkeypatch.setattr(resources, "_PACKAGE", packaged)
    assert resources.sql_dir() == packaged / "_data" / "sql"
    with pytest.raises(FileNotFoundError):
        resources.web_dir()
