"""What differs between the two backends: connecting, parameter style, a few DDL words, where the
schema version lives, and which driver errors mean "the database is not there". The store's SQL is
otherwise one text for both (ON CONFLICT, RETURNING and partial indexes exist in SQLite >= 3.35 and
PostgreSQL alike); statements are written with `?` and a PostgreSQL connection rewrites them.

Each backend is a `Connection`: one driver connection in autocommit mode, so the store's explicit
BEGIN/COMMIT/SAVEPOINT decide every transaction on both. Rows come back as dicts, fetched whole
(every query the store runs is bounded by a key or a LIMIT).
"""

from __future__ import annotations

import logging
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.errors import ConfigError, StoreUnavailable, first_line

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 2.0  # a writer waits this long for another connection's write (or row lock)
PG_CONNECT_TIMEOUT_S = 5
PG_STATEMENT_TIMEOUT_S = 15  # a statement hung on a half-dead server fails instead of blocking forever
PG_SCHEMES = ("postgresql://", "postgres://")
# Two replicas starting together must not both migrate: pg_advisory_xact_lock on this key.
_MIGRATION_LOCK = 0x636C7573  # "clus"

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rows:
    rows: list[Row]
    rowcount: int

    def one(self) -> Row | None:
        return self.rows[0] if self.rows else None


def is_postgresql(target: str | Path) -> bool:
    return isinstance(target, str) and target.startswith(PG_SCHEMES)


def connect(target: str | Path) -> Connection:
    """A PostgreSQL URL or a SQLite path (":memory:" too)."""
    return PgConnection.connect(target) if is_postgresql(target) else SqliteConnection.connect(target)


class Connection(ABC):
    name: str
    serial: str  # the DDL of an auto-numbered integer primary key
    begin_write: str  # starts a transaction that will write
    for_share: str  # appended to a SELECT that must hold its row until the transaction ends

    @abstractmethod
    def execute(self, sql: str, params: Sequence[object] = ()) -> Rows: ...

    @property
    @abstractmethod
    def in_transaction(self) -> bool: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def json_int(self, column: str, key: str) -> str:
        """SQL for the integer at top-level `key` of the JSON text in `column`."""

    @abstractmethod
    def append_only(self, table: str) -> tuple[str, ...]:
        """DDL: triggers refusing every UPDATE and DELETE of `table` in the database itself."""

    @abstractmethod
    def lock_for_migration(self) -> None:
        """Inside the migration's transaction: wait for any other process migrating."""

    @abstractmethod
    def schema_version(self) -> int: ...

    @abstractmethod
    def set_schema_version(self, version: int) -> None: ...

    @abstractmethod
    def unavailable(self, exc: BaseException) -> StoreUnavailable | None:
        """Our error for a driver error that means the database cannot be used now, else None."""

    @property
    @abstractmethod
    def broken(self) -> bool:
        """The connection is gone; the next call must open a new one."""


class SqliteConnection(Connection):
    name = "sqlite"
    serial = "INTEGER PRIMARY KEY AUTOINCREMENT"
    begin_write = "BEGIN IMMEDIATE"  # takes the write lock up front: two writers never deadlock upgrading
    for_share = ""  # BEGIN IMMEDIATE already serialises writers

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.raw = conn
        conn.row_factory = _dict_row

    @classmethod
    def connect(cls, path: str | Path) -> SqliteConnection:
        conn = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_S)
        try:
            conn.execute("PRAGMA journal_mode = WAL")  # no-op for :memory:
            # FULL: a committed START survives a power cut, so it can never look un-started.
            conn.execute("PRAGMA synchronous = FULL")
        except BaseException:
            conn.close()
            raise
        return cls(conn)

    def execute(self, sql: str, params: Sequence[object] = ()) -> Rows:
        cur = self.raw.execute(sql, tuple(params))
        rows = cur.fetchall() if cur.description is not None else []
        return Rows(rows, cur.rowcount)

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    def close(self) -> None:
        self.raw.close()

    def json_int(self, column: str, key: str) -> str:
        return f"json_extract({column}, '$.{key}')"

    def append_only(self, table: str) -> tuple[str, ...]:
        # Guards against our own bugs, not against someone holding the file: they can DROP TABLE.
        return tuple(f"""CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table}
            BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END""" for verb in ("UPDATE", "DELETE"))

    def lock_for_migration(self) -> None:
        pass  # the migration runs in BEGIN IMMEDIATE: the file's write lock is the lock

    def schema_version(self) -> int:
        row = self.execute("PRAGMA user_version").one()
        assert row is not None
        return int(row["user_version"])

    def set_schema_version(self, version: int) -> None:
        self.execute(f"PRAGMA user_version = {version:d}")

    def unavailable(self, exc: BaseException) -> StoreUnavailable | None:
        if isinstance(exc, sqlite3.OperationalError):  # locked past the busy timeout, disk I/O, full
            return StoreUnavailable(f"the state database is unavailable: {first_line(exc)}")
        return None

    @property
    def broken(self) -> bool:
        return False  # a file does not go away between calls; errors are per statement


class PgConnection(Connection):
    name = "postgresql"
    serial = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
    begin_write = "BEGIN"  # READ COMMITTED: the store's compare-and-sets are single UPDATEs
    for_share = " FOR SHARE"

    def __init__(self, conn: psycopg.Connection[Row]) -> None:
        self.raw = conn

    @classmethod
    def connect(cls, url: str | Path) -> PgConnection:
        import psycopg
        from psycopg.rows import dict_row

        try:
            conn = psycopg.connect(
                str(url), autocommit=True, row_factory=dict_row, connect_timeout=PG_CONNECT_TIMEOUT_S,
                application_name="clusterbot",
                # A dead server or a cut network shows within ~25 s even with no statement running.
                keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3,
                # Keepalives stay silent while a sent query is unacknowledged (a black-holed
                # network): without this bound that call, and the store thread behind it, would
                # wait for the kernel's retransmissions (~15 min) while approvals queue up.
                tcp_user_timeout=PG_STATEMENT_TIMEOUT_S * 1000,
                options=f"-c statement_timeout={PG_STATEMENT_TIMEOUT_S * 1000:d}"
                        f" -c lock_timeout={int(BUSY_TIMEOUT_S * 1000):d} -c timezone=UTC")
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {first_line(exc)}") from exc
        except psycopg.ProgrammingError as exc:  # a malformed URL
            raise ConfigError(f"store_url: {first_line(exc)}") from exc
        return cls(conn)

    def execute(self, sql: str, params: Sequence[object] = ()) -> Rows:
        cur = self.raw.execute(_pg_params(sql) if params else sql, tuple(params) if params else None)
        rows = cur.fetchall() if cur.description is not None else []
        return Rows(rows, cur.rowcount)

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self.raw.info.transaction_status is not TransactionStatus.IDLE

    def close(self) -> None:
        self.raw.close()

    def json_int(self, column: str, key: str) -> str:
        return f"(({column})::jsonb ->> '{key}')::bigint"

    def append_only(self, table: str) -> tuple[str, ...]:
        # The bot's role owns the table, so it could drop the trigger: this guards against our bugs
        # and against writes through another role that was granted UPDATE by mistake.
        return (
            f"""CREATE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION '{table} is append-only'; END $$""",
            f"""CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION {table}_append_only()""",
            f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION {table}_append_only()""",
        )

    def lock_for_migration(self) -> None:
        self.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
        self.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")

    def schema_version(self) -> int:
        # Asked before any DDL when only reading (Store.open(create=False)): absent is 0.
        absent = self.execute("SELECT to_regclass('schema_version') IS NULL AS absent").one()
        if absent is not None and absent["absent"]:
            return 0
        row = self.execute("SELECT max(version) AS v FROM schema_version").one()
        return 0 if row is None or row["v"] is None else int(row["v"])

    def set_schema_version(self, version: int) -> None:
        self.execute("DELETE FROM schema_version")
        self.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    def unavailable(self, exc: BaseException) -> StoreUnavailable | None:
        import psycopg

        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) or self.broken:
            # Server gone, restarting, a cut network, a lock or statement timeout.
            return StoreUnavailable(f"the state database is unavailable: {first_line(exc)}")
        return None

    @property
    def broken(self) -> bool:
        return self.raw.broken or self.raw.closed


def _pg_params(sql: str) -> str:
    # Our statements never hold a literal '?' or '%'; refusing them keeps the rewrite honest.
    if "%" in sql:
        raise ValueError(f"'%' in a parametrised statement: {sql[:60]}")
    return sql.replace("?", "%s")


def _dict_row(cur: sqlite3.Cursor, row: tuple[Any, ...]) -> Row:
    return {d[0]: v for d, v in zip(cur.description, row, strict=True)}

