"""Bulk writes (`annotate.bulk`): COPY with ids from the sequence, defaults for the columns left out, and, inside
`references_checked_in_bulk()`, foreign keys checked set-wise instead of by PostgreSQL's row triggers: a bad
reference still fails, by name, and the triggers are back on after the block."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from annotate import bulk
from annotate.models import ImportSource, Message

pytestmark = pytest.mark.django_db

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="COPY and trigger roles are PostgreSQL's"
)
COLUMNS = ("project_id", "parent_id", "role", "text", "depth", "path_hash", "author_import_id")


def _role() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('session_replication_role')")
        return cursor.fetchone()[0]


def _source(project) -> ImportSource:
    return ImportSource.objects.create(project=project, name="f.jsonl", format="hh", sha256="")


def test_written_ids_are_kept_as_runs_and_only_the_others_need_a_check():
    written = bulk._Written()
    written.add("t", [5, 3, 4, 10])
    written.add("t", [6, 11, 20])
    assert written.runs["t"] == [[3, 6], [10, 11], [20, 20]]
    assert written.others("t", {2, 3, 6, 7, 12, 20, 21}) == {2, 7, 12, 21}
    assert written.others("other", {3}) == {3}


def test_rows_get_their_ids_in_order_and_the_defaults_of_the_columns_left_out(project):
    source = _source(project)
    rows = [(project.pk, None, "user", f"question {i}", 0, f"h{i}", source.pk) for i in range(3)]
    ids = bulk.insert_returning_ids(Message, COLUMNS, rows)
    stored = {m.pk: m for m in Message.objects.filter(pk__in=ids)}
    assert [stored[i].text for i in ids] == ["question 0", "question 1", "question 2"]
    assert all(m.metadata == {} and m.created_at is not None for m in stored.values())


def test_an_unknown_column_is_named():
    with pytest.raises(ValueError, match="Message has no column colour"):
        bulk.insert(Message, ("colour",), [("red",)])


@postgresql_only
def test_references_to_rows_written_in_the_block_or_existing_pass_and_the_triggers_come_back(project):
    source = _source(project)
    with transaction.atomic(), bulk.references_checked_in_bulk() as checked_here:
        assert checked_here is True  # the test database's role is a superuser
        assert _role() == "replica"
        (parent,) = bulk.insert_returning_ids(Message, COLUMNS, [(project.pk, None, "user", "q", 0, "p", source.pk)])
        bulk.insert_returning_ids(Message, COLUMNS, [(project.pk, parent, "assistant", "a", 1, "c", source.pk)])
    assert _role() == "origin"
    assert Message.objects.get(path_hash="c").parent_id == parent


@postgresql_only
def test_a_reference_to_a_missing_row_fails_by_name_and_nothing_is_kept(project):
    source = _source(project)
    missing = project.pk + 1000
    with pytest.raises(
        IntegrityError, match=rf"annotate_message: project_id refer to 1 annotate_project rows .*{missing}"
    ):
        with transaction.atomic(), bulk.references_checked_in_bulk():
            bulk.insert_returning_ids(Message, COLUMNS, [(project.pk, None, "user", "fine", 0, "ok", source.pk)])
            bulk.insert_returning_ids(Message, COLUMNS, [(missing, None, "user", "orphan", 0, "x", source.pk)])
    assert not Message.objects.filter(path_hash__in=["ok", "x"]).exists()
    assert _role() == "origin"


@postgresql_only
def test_a_missing_parent_message_is_caught_too(project):
    source = _source(project)
    with pytest.raises(IntegrityError, match="parent_id refer to 1 annotate_message rows"):
        with transaction.atomic(), bulk.references_checked_in_bulk():
            bulk.insert(Message, COLUMNS, [(project.pk, 10**12, "assistant", "a", 1, "y", source.pk)])


@postgresql_only
def test_switched_off_the_triggers_check_as_always(project, settings):
    settings.REWARDLAB_IMPORT_BULK_CHECKS = False
    source = _source(project)
    with pytest.raises(IntegrityError):
        with transaction.atomic(), bulk.references_checked_in_bulk() as checked_here:
            assert checked_here is False
            assert _role() == "origin"
            bulk.insert(Message, COLUMNS, [(project.pk + 1000, None, "user", "q", 0, "z", source.pk)])
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # Django's are deferred to the commit


@postgresql_only
def test_a_role_that_may_not_skip_the_triggers_falls_back_to_them(project):
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if not cursor.fetchone()[0]:
            pytest.skip("needs a superuser to make a plain role")
    source = _source(project)
    with transaction.atomic():  # the role and its grants are rolled back with the test
        with connection.cursor() as cursor:
            cursor.execute("CREATE ROLE rewardlab_test_plain NOLOGIN")
            cursor.execute("GRANT ALL ON ALL TABLES IN SCHEMA public TO rewardlab_test_plain")
            cursor.execute("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO rewardlab_test_plain")
            cursor.execute("SET LOCAL ROLE rewardlab_test_plain")
        with bulk.references_checked_in_bulk() as checked_here:
            assert checked_here is False
            assert _role() == "origin"
            ids = bulk.insert_returning_ids(Message, COLUMNS, [(project.pk, None, "user", "q", 0, "w", source.pk)])
        assert Message.objects.filter(pk__in=ids).exists()
        transaction.set_rollback(True)
