"""Bulk writes for large imports. On PostgreSQL rows go in with COPY (ids taken from the table's sequence first, so
parents can be referred to before they are written); elsewhere with bulk_create. Callers pass plain dicts of
column values (attnames: `parent_id`, not `parent`); fields left out get their defaults.

COPY skips the ORM's per-object work (model instances, per-value preparation, one long INSERT statement to parse),
which is most of an import's time: ~7 rows per imported pair (prompt, replies, task, its candidates, the judgement).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from django.db import connection, models
from django.utils import timezone


def uses_copy() -> bool:
    return connection.vendor == "postgresql"


def allocate_ids(model: type[models.Model], count: int) -> list[int]:
    """`count` fresh primary keys from the table's sequence (PostgreSQL)."""
    if count == 0:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [model._meta.db_table, model._meta.pk.column, count],
        )
        return [row[0] for row in cursor.fetchall()]


def _columns(model: type[models.Model], sample: dict) -> list[models.Field]:
    fields = []
    for field in model._meta.concrete_fields:
        if field.primary_key and field.attname not in sample:
            continue  # the sequence's default
        fields.append(field)
    return fields


def _default(field: models.Field, now):
    if getattr(field, "auto_now_add", False) or getattr(field, "auto_now", False):
        return now
    return field.get_default()


def insert(model: type[models.Model], rows: Sequence[dict], *, batch_size: int = 2000) -> None:
    """Insert `rows` (dicts of attname → value) into `model`'s table: COPY on PostgreSQL, bulk_create elsewhere."""
    if not rows:
        return
    if not uses_copy():
        model.objects.bulk_create([model(**row) for row in rows], batch_size=batch_size)
        return
    now = timezone.now()
    fields = _columns(model, rows[0])
    defaults = {f.attname: _default(f, now) for f in fields if f.attname not in rows[0]}
    as_json = {f.attname for f in fields if isinstance(f, models.JSONField)}
    names = [f.attname for f in fields]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor, cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            values = []
            for name in names:
                value = row[name] if name in row else defaults[name]
                values.append(json.dumps(value) if name in as_json and value is not None else value)
            copy.write_row(values)


def insert_returning_ids(model: type[models.Model], rows: Sequence[dict], *, batch_size: int = 2000) -> list[int]:
    """Insert `rows` and return their new primary keys, in order."""
    if not rows:
        return []
    if uses_copy():
        ids = allocate_ids(model, len(rows))
        insert(model, [{model._meta.pk.attname: pk, **row} for pk, row in zip(ids, rows, strict=True)])
        return ids
    created = model.objects.bulk_create([model(**row) for row in rows], batch_size=batch_size)
    if created[0].pk is None:
        raise RuntimeError("this database backend cannot return ids from a bulk insert")
    return [obj.pk for obj in created]


def analyze(*models_: type[models.Model]) -> None:
    """ANALYZE the tables (PostgreSQL): inside a long import, the statistics of tables it is filling are those of
    before, and lookups by index would be planned as scans."""
    with connection.cursor() as cursor:
        for model in models_:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
