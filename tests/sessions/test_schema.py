"""The schema is portable: it compiles for PostgreSQL with no SQLite-only constructs."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from facecast.sessions.db import Base, async_url


def test_schema_compiles_for_postgresql_and_sqlite() -> None:
    for dialect in (postgresql.dialect(), sqlite.dialect()):
        for table in Base.metadata.sorted_tables:
            ddl = str(CreateTable(table).compile(dialect=dialect))
            assert "AUTOINCREMENT" not in ddl.upper()
            for index in table.indexes:
                str(CreateIndex(index).compile(dialect=dialect))
    ddl = str(CreateTable(Base.metadata.tables["sessions"]).compile(dialect=postgresql.dialect()))
    assert "TIMESTAMP WITH TIME ZONE" in ddl and "JSON" in ddl


def test_async_driver_mapping() -> None:
    assert async_url("sqlite:///./x.db") == "sqlite+aiosqlite:///./x.db"
    assert async_url("postgresql://u:p@h/db") == "postgresql+asyncpg://u:p@h/db"
    assert async_url("postgresql+asyncpg://h/db") == "postgresql+asyncpg://h/db"
