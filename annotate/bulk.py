"""Bulk writes for large imports. On PostgreSQL rows go in with COPY (ids taken from the table's sequence first, so
parents can be referred to before they are written); elsewhere with bulk_create. Callers pass plain dicts of
column values (attnames: `parent_id`, not `parent`); fields left out get their defaults.

COPY skips the ORM's per-object work (model instances, per-value preparation, one long INSERT statement to parse),
which is most of an import's time: ~7 rows per imported pair (prompt, replies, task, its candidates, the judgement).

What is left is PostgreSQL's own checking of foreign keys, one trigger call and one query per reference (~20 per
imported pair, half an import's time). Inside `references_checked_in_bulk()` rows written here skip those triggers,
the way `pg_restore --disable-triggers` loads data, and are checked set-wise instead, one query per referenced table
per insert, which also locks the referenced rows as the triggers would. See that function.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
from collections.abc import Iterator, Sequence

from django.conf import settings
from django.db import IntegrityError, connection, models, transaction
from django.db.utils import DatabaseError
from django.utils import timezone

logger = logging.getLogger(__name__)


class _Written:
    """The ids `insert_returning_ids` wrote inside `references_checked_in_bulk()`, per table, as runs of consecutive
    ids (one sequence's values: a few runs however many rows). A reference to one of them needs no check: the row
    was written in this transaction by the COPY that took the id, and no one else can see it, let alone delete it."""

    def __init__(self) -> None:
        self.runs: dict[str, list[list[int]]] = {}

    def add(self, table: str, ids: Sequence[int]) -> None:
        runs = self.runs.setdefault(table, [])
        for i in sorted(ids):
            if runs and runs[-1][1] + 1 >= i >= runs[-1][0]:
                runs[-1][1] = max(runs[-1][1], i)
            else:
                runs.append([i, i])
        runs.sort()
        merged = [runs[0]]
        for low, high in runs[1:]:
            if low <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], high)
            else:
                merged.append([low, high])
        self.runs[table] = merged

    def others(self, table: str, ids: set[int]) -> set[int]:
        """Those of `ids` not written here."""
        for low, high in self.runs.get(table, ()):
            ids = {i for i in ids if not low <= i <= high}
        return ids


# A _Written inside references_checked_in_bulk() while PostgreSQL's foreign-key triggers are off for this
# transaction, else None.
_checking: contextvars.ContextVar[_Written | None] = contextvars.ContextVar("rewardlab_bulk_checks", default=None)


def uses_copy() -> bool:
    return connection.vendor == "postgresql"


def allocate_ids(model: type[models.Model], count: int) -> list[int]:
    """`count` fresh primary keys from the table's sequence (PostgreSQL)."""
    if count == 0:
        return []
    with connection.cursor() as cursor:
        # The sequence is looked up once, not once per value (pg_get_serial_sequence reads the catalogs).
        cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [model._meta.db_table, model._meta.pk.column])
        (sequence,) = cursor.fetchone()
        cursor.execute("SELECT nextval(%s::regclass) FROM generate_series(1, %s)", [sequence, count])
        return [row[0] for row in cursor.fetchall()]


def _default(field: models.Field, now):
    if getattr(field, "auto_now_add", False) or getattr(field, "auto_now", False):
        return now
    return field.get_default()


def _as_json(value):
    if value is None:
        return None
    if not value and isinstance(value, dict | list):
        return "{}" if isinstance(value, dict) else "[]"
    return json.dumps(value)


def _constant(field: models.Field, value):
    if isinstance(field, models.JSONField):
        return _as_json(value)
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    return value


def insert(
    model: type[models.Model],
    columns: Sequence[str],
    rows: Sequence[Sequence],
    *,
    ids: Sequence[int] | None = None,
    batch_size: int = 2000,
) -> None:
    """Insert `rows` (tuples of values for `columns`, attnames: `parent_id`) into `model`'s table: COPY on
    PostgreSQL, bulk_create elsewhere. Columns left out get their defaults; `ids`, if given, are the rows' primary
    keys (from `allocate_ids`)."""
    if not rows:
        return
    fields = {f.attname: f for f in model._meta.concrete_fields}
    if unknown := [c for c in columns if c not in fields]:
        raise ValueError(f"{model.__name__} has no column {', '.join(unknown)}")
    pk = model._meta.pk
    if not uses_copy():
        objects = [model(**dict(zip(columns, row, strict=True))) for row in rows]
        for obj, pk_value in zip(objects, ids or (), strict=False):
            setattr(obj, pk.attname, pk_value)
        model.objects.bulk_create(objects, batch_size=batch_size)
        return
    now = timezone.now()
    rest = [f for f in fields.values() if f.attname not in columns and not f.primary_key]
    # The same values on every row, as text once (psycopg formatting a datetime on each row is half its work).
    tail = tuple(_constant(f, _default(f, now)) for f in rest)
    json_at = [i for i, c in enumerate(columns) if isinstance(fields[c], models.JSONField)]
    names = ([pk] if ids is not None else []) + [fields[c] for c in columns] + rest
    sql_columns = ", ".join(connection.ops.quote_name(f.column) for f in names)
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor, cursor.cursor.copy(f"COPY {table} ({sql_columns}) FROM STDIN") as copy:
        write = copy.write_row
        for index, row in enumerate(rows):
            if json_at:
                row = list(row)
                for i in json_at:
                    row[i] = _as_json(row[i])
            write((ids[index], *row, *tail) if ids is not None else (*row, *tail))
    if (written := _checking.get()) is not None:
        _check_references(model, fields, columns, rows, written)


def insert_returning_ids(
    model: type[models.Model], columns: Sequence[str], rows: Sequence[Sequence], *, batch_size: int = 2000
) -> list[int]:
    """Insert `rows` (as `insert`) and return their new primary keys, in order."""
    if not rows:
        return []
    if uses_copy():
        ids = allocate_ids(model, len(rows))
        if (written := _checking.get()) is not None:
            written.add(model._meta.db_table, ids)
        insert(model, columns, rows, ids=ids)
        return ids
    created = model.objects.bulk_create(
        [model(**dict(zip(columns, row, strict=True))) for row in rows], batch_size=batch_size
    )
    if created[0].pk is None:
        raise RuntimeError("this database backend cannot return ids from a bulk insert")
    return [obj.pk for obj in created]


@contextlib.contextmanager
def references_checked_in_bulk() -> Iterator[bool]:
    """Inside an atomic block: rows written with `insert` skip PostgreSQL's row-by-row foreign-key triggers and
    have their references checked here instead, at the end of each `insert`, one query per referenced table: every
    referenced row must exist (else IntegrityError, and the transaction is rolled back), and is locked FOR KEY SHARE
    until the commit, as the trigger would lock it, so no one can delete it under the import. A reference must be to
    a row that exists when the rows referring to it are inserted (parents first), which is how imports write.

    The triggers are skipped with `SET LOCAL session_replication_role = replica` (for this transaction only: other
    connections check as always), which PostgreSQL allows a superuser or, from PostgreSQL 15, a role granted it:
    `GRANT SET ON PARAMETER session_replication_role TO <role>`. Without that right, or with
    REWARDLAB_IMPORT_BULK_CHECKS off, or on another database, nothing changes: the triggers check. Yields whether
    the checks are done here."""
    if not uses_copy() or not settings.REWARDLAB_IMPORT_BULK_CHECKS or _checking.get() is not None:
        yield False
        return
    if not connection.in_atomic_block:
        raise RuntimeError("references_checked_in_bulk() must be used inside transaction.atomic()")
    try:
        with transaction.atomic(), connection.cursor() as cursor:  # a savepoint: a refusal leaves the rest usable
            cursor.execute("SELECT current_setting('session_replication_role')")
            (before,) = cursor.fetchone()
            cursor.execute("SET LOCAL session_replication_role = replica")
    except DatabaseError as exc:
        logger.info("foreign keys are checked row by row: this database role may not skip the triggers (%s)", exc)
        yield False
        return
    token = _checking.set(_Written())
    try:
        yield True
    finally:
        _checking.reset(token)
    # Only on success: after an error, rolling back the transaction (or savepoint) undoes the SET LOCAL.
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('session_replication_role', %s, true)", [before])


def _check_references(
    model: type[models.Model],
    fields: dict[str, models.Field],
    columns: Sequence[str],
    rows: Sequence[Sequence],
    written: _Written,
) -> None:
    """Every foreign key of the rows just written refers to a row that exists; lock those rows FOR KEY SHARE (but
    those written in this transaction: see _Written). A column left out has its default: null."""
    by_target: dict[tuple[str, str], tuple[set[int], list[str]]] = {}
    for at, name in enumerate(columns):
        field = fields[name]
        if not field.is_relation or not field.db_constraint:
            continue
        referenced = {row[at] for row in rows}
        referenced.discard(None)
        target = (field.related_model._meta.db_table, field.target_field.column)
        if field.target_field.primary_key:
            referenced = written.others(target[0], referenced)
        if referenced:
            ids, names = by_target.setdefault(target, (set(), []))
            ids.update(referenced)
            names.append(field.column)
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        for (table, column), (ids, names) in by_target.items():
            cursor.execute(
                f"SELECT {quote(column)} FROM {quote(table)} WHERE {quote(column)} = ANY(%s) FOR KEY SHARE",  # noqa: S608 - names from the models
                [sorted(ids)],
            )
            found = {row[0] for row in cursor.fetchall()}
            if len(found) != len(ids):
                missing = sorted(ids - found)
                raise IntegrityError(
                    f"{model._meta.db_table}: {', '.join(names)} refer to {len(missing)} {table} rows that do not "
                    f"exist (ids {', '.join(map(str, missing[:5]))}{'…' if len(missing) > 5 else ''})"
                )
