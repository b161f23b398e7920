"""Versioned ClickHouse migrations: one numbered module per change, both directions.

Each module ``NNNN_name.py`` defines ``MIGRATION``. SQL uses ``{db}`` and is rendered
per server by :func:`schemas.clickhouse.ddl.render`. Every forward statement must be
idempotent (``IF NOT EXISTS``) so a half-applied migration can be re-run.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    id: str
    forwards: tuple[str, ...]
    backwards: tuple[str, ...]


def all_migrations() -> list[Migration]:
    """Every migration, in id order."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name[:4].isdigit():
            module = importlib.import_module(f"{__name__}.{info.name}")
            migration: Migration = module.MIGRATION
            if migration.id != info.name:
                raise RuntimeError(f"migration {info.name} declares id {migration.id!r}")
            found.append(migration)
    return sorted(found, key=lambda m: m.id)
