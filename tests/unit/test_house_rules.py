"""Import rules of design.md: hub imports no interfaces/Flask/pynetdicom; mappings imports no database,
web or socket code; only hub.store imports SQLAlchemy; interfaces never import hub.store."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def offenders(package: str, forbidden: tuple[str, ...], allow_under: str | None = None) -> list[str]:
    bad = []
    for path in modules(package):
        rel = path.relative_to(ROOT).as_posix()
        if allow_under and rel.startswith(allow_under):
            continue
        for name in imports_of(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{rel} imports {name}")
    return bad


def test_hub_imports_no_adapter_code():
    assert offenders("hub", ("interfaces", "flask", "werkzeug", "waitress", "pynetdicom")) == []


def test_mappings_import_no_database_web_or_socket_code():
    forbidden = ("sqlalchemy", "psycopg", "sqlite3", "flask", "werkzeug", "socket", "socketserver", "pynetdicom",
                 "urllib.request", "http", "hub.store", "hub.app", "interfaces")
    assert offenders("mappings", forbidden) == []


def test_only_hub_store_imports_sqlalchemy():
    bad = offenders("hub", ("sqlalchemy", "alembic", "psycopg"), allow_under="hub/store/")
    bad += offenders("interfaces", ("sqlalchemy", "alembic", "psycopg"))
    bad += offenders("mappings", ("sqlalchemy", "alembic", "psycopg"))
    assert bad == []


def test_interfaces_never_import_hub_store():
    assert offenders("interfaces", ("hub.store",)) == []


@pytest.mark.parametrize("package", ["hub", "interfaces", "mappings"])
def test_rule_checker_sees_imports(package: str):
    assert any(imports_of(p) for p in modules(package))  # the walk is not vacuous
