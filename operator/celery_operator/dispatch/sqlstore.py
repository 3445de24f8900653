"""PostgreSQL through SQLAlchemy: the engine for a Celery-style URL, and tables of task
ids with an expiry (the operator's revoke marks, the worker guard's run-once claims).

Celery spells a database result backend `db+postgresql://…`; the operator also reads
django-celery-results' table from `django-db+postgresql://…`. The part after the `+`
is an SQLAlchemy URL; without a driver it uses psycopg (3). Passwords in the URL are
percent-encoded, as in any URL ('@' is %40, ':' %3A, '/' %2F).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import make_url

from celery_operator.config import redact_url

# Celery's prefix for a database result backend, and the operator's own for
# django-celery-results' table.
DB_PREFIX = "db+"
DJANGO_PREFIX = "django-db+"
POSTGRES_SCHEMES = frozenset({"postgresql", "postgres"})
CONNECT_TIMEOUT_SECONDS = 10

REVOKED_TABLE = "celery_operator_revoked"
CLAIMS_TABLE = "celery_operator_run_once"
SENT_TABLE = "celery_operator_sent"
# A writer deletes the expired rows of its table once per this many puts.
PURGE_EVERY = 1000


def sqlalchemy_url(url: str) -> str:
    """The SQLAlchemy URL inside a `db+…` or `django-db+…` URL (psycopg by default)."""
    for prefix in (DJANGO_PREFIX, DB_PREFIX):
        if url.lower().startswith(prefix):
            url = url[len(prefix):]
            break
    scheme, sep, rest = url.partition("://")
    if scheme.lower() in POSTGRES_SCHEMES:
        scheme = "postgresql+psycopg"
    return f"{scheme}{sep}{rest}"


def is_postgres(url: str) -> bool:
    try:
        return make_url(sqlalchemy_url(url)).get_backend_name() == "postgresql"
    except Exception:  # does not parse: not one we can use
        return False


def create_engine(url: str) -> sa.Engine:
    """A small pool; connections checked before use, so one from before a database
    restart is replaced instead of failing a read."""
    return sa.create_engine(
        sqlalchemy_url(url),
        pool_size=2,
        max_overflow=2,
        pool_pre_ping=True,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
    )


def one_line(url: str, exc: BaseException) -> str:
    """`exc` in one line naming the database by its redacted URL: the driver's own
    message (SQLAlchemy's adds the statement and its parameters, which say nothing
    a user can act on)."""
    cause = getattr(exc, "orig", None) or exc
    text = " ".join(str(cause).split()) or type(cause).__name__
    return f"{redact_url(url)}: {text}"


_metadata = sa.MetaData()


def _id_table(name: str) -> sa.Table:
    return sa.Table(
        name, _metadata,
        sa.Column("task_id", sa.String(255), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )


def _lock_key(name: str) -> int:
    """A stable 64-bit advisory-lock key for a table name."""
    return int.from_bytes(hashlib.sha256(f"celery-operator:{name}".encode()).digest()[:8],
                          "big", signed=True)


class IdTable:
    """Task ids with an expiry in one table, created when missing. Expired rows count
    as absent; they are deleted now and then by the writers."""

    def __init__(self, engine: sa.Engine, name: str) -> None:
        self.engine = engine
        known = _metadata.tables.get(name)
        self.table = known if known is not None else _id_table(name)
        self._created = False
        self._puts = 0

    @contextlib.contextmanager
    def _begin(self) -> Iterator[sa.Connection]:
        """A transaction on the table, created first when missing (again after any
        failure: the database may have come back without it)."""
        try:
            with self.engine.begin() as conn:
                if not self._created:
                    # Processes creating the table at once collide in PostgreSQL's catalog
                    # (a UniqueViolation on pg_type, checkfirst or not): one creates it,
                    # the others wait for its commit on this lock and then find it.
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_key(
                        self.table.name))))
                    self.table.create(conn, checkfirst=True)
                    self._created = True
                yield conn
        except Exception:
            self._created = False
            raise

    def claim(self, task_id: str, ttl_seconds: int) -> bool:
        """True for the first live claim of `task_id` (INSERT … ON CONFLICT DO NOTHING;
        an expired row is taken over)."""
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=ttl_seconds)
        t = self.table
        with self._begin() as conn:
            conn.execute(sa.delete(t).where(t.c.task_id == task_id, t.c.expires_at <= now))
            inserted = conn.execute(
                insert(t).values(task_id=task_id, expires_at=expires)
                .on_conflict_do_nothing().returning(t.c.task_id)
            ).first()
        return inserted is not None

    def put(self, task_id: str, ttl_seconds: int) -> None:
        """Set `task_id` (its expiry moved to `ttl_seconds` from now)."""
        expires = datetime.now(UTC) + timedelta(seconds=ttl_seconds)
        t = self.table
        self._puts += 1
        with self._begin() as conn:
            stmt = insert(t).values(task_id=task_id, expires_at=expires)
            conn.execute(stmt.on_conflict_do_update(
                index_elements=[t.c.task_id], set_={"expires_at": expires}
            ))
            if self._puts % PURGE_EVERY == 1:  # a table written per publish must not grow
                conn.execute(sa.delete(t).where(t.c.expires_at <= datetime.now(UTC)))

    def has(self, task_id: str) -> bool:
        t = self.table
        with self._begin() as conn:
            row = conn.execute(
                sa.select(t.c.task_id).where(
                    t.c.task_id == task_id, t.c.expires_at > datetime.now(UTC)
                )
            ).first()
        return row is not None

    def present(self, task_ids: Sequence[str]) -> set[str]:
        """The ids among `task_ids` that are set (one query)."""
        if not task_ids:
            return set()
        t = self.table
        with self._begin() as conn:
            rows = conn.execute(
                sa.select(t.c.task_id).where(
                    t.c.task_id.in_(list(task_ids)), t.c.expires_at > datetime.now(UTC)
                )
            ).all()
        return {str(row[0]) for row in rows}
