"""Dataset snapshots: frozen, content-addressed, downloadable byte for byte, never half written."""

import pytest

from annotate import exports, services
from annotate.exports import ExportOptions
from annotate.roles import RoleName
from tests.conftest import jsonl
from training.models import DatasetSnapshot
from training.services import snapshot_freeze

pytestmark = pytest.mark.django_db


@pytest.fixture
def compared(make_user):
    project = services.project_create(name="Snap", slug="snap", import_task_kinds=["compare"], overlap_compare=3)
    rows = [{"prompt": f"Q{i}?", "completions": [f"good {i}", f"bad {i}"]} for i in range(3)]
    services.prompts_import(project=project, data=jsonl(*rows), filename="p.jsonl")
    labeler = make_user(RoleName.LABELER)
    for n in range(2):
        assignment = services.task_lease_next(labeler=labeler, project=project)
        services.comparison_submit(labeler=labeler, assignment_id=assignment.pk, choice=-3, client_token=f"t{n}")
    return project, labeler


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_snapshot_freezes_the_export_byte_for_byte(artifacts, compared, fmt):
    project, _ = compared
    options = ExportOptions(format=fmt)
    result = snapshot_freeze(project=project, options=options, name="first")
    snapshot = result.snapshot
    assert result.created and snapshot.row_counts == {"comparison": 2, "rows": 2}
    assert len(snapshot.annotation_ids["comparisons"]) == 2 and snapshot.filter["format"] == fmt
    stored = open(snapshot.export_path, "rb").read()
    fresh = b"".join(exports.export_chunks(exports.export_rows(project, options), fmt))
    assert stored == fresh
    assert not list(artifacts.rglob("*.partial"))


def test_the_same_data_and_options_give_the_same_snapshot(artifacts, compared):
    project, labeler = compared
    first = snapshot_freeze(project=project, options=ExportOptions()).snapshot
    again = snapshot_freeze(project=project, options=ExportOptions())
    assert not again.created and again.snapshot == first
    assert snapshot_freeze(project=project, options=ExportOptions(style="conversational")).created
    assignment = services.task_lease_next(labeler=labeler, project=project)
    services.comparison_submit(labeler=labeler, assignment_id=assignment.pk, choice=2, client_token="more")
    later = snapshot_freeze(project=project, options=ExportOptions()).snapshot
    assert later != first and later.row_counts["rows"] == 3
    assert open(first.export_path, "rb").read().count(b"\n") == 2  # the old snapshot did not change


def test_a_snapshot_cannot_be_changed(artifacts, compared):
    project, _ = compared
    snapshot = snapshot_freeze(project=project, options=ExportOptions()).snapshot
    snapshot.name = "renamed"
    with pytest.raises(ValueError, match="immutable"):
        snapshot.save()


def test_a_crash_while_writing_leaves_no_snapshot_and_no_file(artifacts, compared, monkeypatch):
    project, _ = compared

    def broken(rows, fmt):
        yield b"{"
        raise OSError("disk full")

    monkeypatch.setattr(exports, "export_chunks", broken)
    with pytest.raises(OSError, match="disk full"):
        snapshot_freeze(project=project, options=ExportOptions())
    assert not DatasetSnapshot.objects.exists()
    assert [p for p in artifacts.rglob("*") if p.is_file()] == []
