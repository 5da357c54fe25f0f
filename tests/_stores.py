"""A store called synchronously, for tests that look into a database directly."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from asyncrun.server import Blocking, open_store
from asyncrun.server._store._sqlite import SQLiteDriver


class SyncStore:
    """The store of a SQLite file or PostgreSQL URL: its async methods called here and now."""

    def __init__(self, db: str | Path) -> None:
        self.store = open_store(db)
        self.call = Blocking(self.store)

    @property
    def driver(self) -> SQLiteDriver:
        driver = self.store.driver
        assert isinstance(driver, SQLiteDriver)
        return driver

    @property
    def _db(self) -> sqlite3.Connection:
        return self.driver.db

    def schema_version(self) -> int:
        return self.driver.schema_version()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)
        return lambda *args, **kwargs: self.call(method, *args, **kwargs)

    def close(self) -> None:
        self.call.close()
