"""Per-service databases: SQLAlchemy 2.x async engines and Alembic migrations.

Each domain service owns its tables. Embedded: one SQLite file per service
(WAL). Production: PostgreSQL, one schema per service selected with
`search_path`, so table definitions carry no schema and the same migrations
run on both.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, MetaData, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from services.platform.settings import Settings

_MIGRATIONS_ENV = Path(__file__).parent / "migrations"
PLATFORM_VERSIONS = _MIGRATIONS_ENV / "platform_versions"

# Alembic keeps the running migration's context in module globals: two migrations interleaving
# on one event loop (e.g. the ERP sync opening the connectors database in its task while the hub
# migrates the gateway's) corrupt each other ("table already exists", KeyError 'config').
# Migrations in one process therefore run one at a time.
_MIGRATION_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _migration_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _MIGRATION_LOCKS.get(loop)
    if lock is None:
        lock = _MIGRATION_LOCKS[loop] = asyncio.Lock()
    return lock


class Database:
    """One domain service's database: engine, sessions, migrations, probe."""

    def __init__(self, service: str, url: str, *, schema: str | None = None) -> None:
        self.service = service
        self.url = url
        self.schema = schema
        self.engine: AsyncEngine = _create_engine(url, schema)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on error."""
        async with self.sessions() as session, session.begin():
            yield session

    async def migrate(
        self, versions_dir: Path, metadata: MetaData | None = None, *, version_table: str = "alembic_version"
    ) -> None:
        """Bring this database to the newest revision in `versions_dir`.

        The platform's own tables (outbox, inbox, idempotency keys) have their own
        revision chain and version table beside each service's chain.
        """
        if self.schema is not None:
            async with self.engine.begin() as conn:
                await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS_ENV))
        cfg.set_main_option("path_separator", "os")
        cfg.set_main_option("version_locations", str(versions_dir))
        cfg.attributes["target_metadata"] = metadata
        cfg.attributes["version_table_schema"] = self.schema
        cfg.attributes["version_table"] = version_table

        def upgrade(connection: Connection) -> None:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")

        async with _migration_lock(), self.engine.begin() as conn:
            if self.schema is not None:
                # Replicas of one service may start together: one migrates, the others wait.
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"migrate:{self.schema}"}
                )
            await conn.run_sync(upgrade)

    async def migrate_all(self, versions_dir: Path | None, metadata: MetaData | None = None) -> None:
        """The platform tables, then the service's own."""
        await self.migrate(PLATFORM_VERSIONS, version_table="platform_alembic_version")
        if versions_dir is not None:
            await self.migrate(versions_dir, metadata)

    async def ping(self, timeout: float = 2.0) -> bool:
        """True when the database answers a trivial query within `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout), self.engine.connect() as conn:
                # The service's own schema must be there, not just the server.
                await conn.execute(text("SELECT version_num FROM platform_alembic_version"))
            return True
        except Exception:
            return False

    async def drop_schema(self) -> None:
        """PostgreSQL: drop this service's schema and everything in it (benchmarks, tests)."""
        if self.schema is not None:
            async with self.engine.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
        await self.engine.dispose()

    async def dispose(self) -> None:
        await self.engine.dispose()


def _create_engine(url: str, schema: str | None) -> AsyncEngine:
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        # One connection per process and database: SQLite has one writer at a time anyway,
        # and queueing in the pool hands the connection over at once, where competing
        # connections would sleep in SQLite's busy handler (up to 100 ms a try).
        kwargs = {"connect_args": {"timeout": 30}, "pool_size": 1, "max_overflow": 0, "pool_timeout": 60}
    elif schema is not None:
        kwargs["connect_args"] = {"options": f"-csearch_path={schema}", "connect_timeout": 5}
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        # Take the write lock when a transaction starts, so two writers wait for each
        # other (busy_timeout) instead of failing on a read-to-write lock upgrade.
        event.listen(engine.sync_engine, "begin", _sqlite_begin_immediate)
    return engine


def _sqlite_begin_immediate(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (see above)
    cursor = dbapi_connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        "synchronous=NORMAL",
        "foreign_keys=ON",
        "busy_timeout=30000",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def database_for(service: str, settings: Settings) -> Database:
    """The Database a service uses under these settings."""
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path = (settings.data_dir / f"{service}.db").resolve()
        return Database(service, f"sqlite+aiosqlite:///{path}")
    return Database(service, settings.database_url, schema=f"{settings.db_schema_prefix}{service}")


async def open_migrated(
    name: str, settings: Settings, versions_dir: Path | None = None, metadata: MetaData | None = None
) -> Database:
    """`database_for(name)` migrated (the platform's tables, then `versions_dir`'s chain), for
    components with a database of their own; disposed again when the migration fails."""
    db = database_for(name, settings)
    try:
        await db.migrate_all(versions_dir, metadata)
    except BaseException:
        await db.dispose()
        raise
    return db
