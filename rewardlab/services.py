"""Writes on the training side: dataset snapshots (runs, versions and the retraining cycle come here too)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction

from annotate import exports
from annotate.models import Project
from rewardlab.models import DatasetSnapshot

SNAPSHOT_FORMAT_VERSION = 1


@dataclass(frozen=True)
class FreezeResult:
    snapshot: DatasetSnapshot
    created: bool  # False: an identical snapshot (same judgements, same options) existed and is returned


def snapshot_content_hash(options: exports.ExportOptions, annotation_ids: dict[str, list[int]]) -> str:
    canonical = json.dumps(
        {"version": SNAPSHOT_FORMAT_VERSION, "options": options.as_filter(), "ids": annotation_ids},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def snapshot_path(project: Project, content_hash: str, options: exports.ExportOptions) -> Path:
    return (
        Path(settings.REWARDLAB_ARTIFACTS_DIR)
        / "snapshots"
        / project.slug
        / f"{content_hash}.{options.filename_suffix}"
    )


def snapshot_freeze(
    *, project: Project, options: exports.ExportOptions, name: str = "", created_by=None
) -> FreezeResult:
    """Freeze the judgements an export with `options` reads now: their ids, the options, the row counts and the
    exported file itself, content-addressed. Freezing the same data with the same options twice returns the
    first snapshot. The file is written to a temporary name and renamed into place, so a crash leaves no half
    file behind a snapshot row."""
    annotation_ids = exports.matching_annotation_ids(project, options)
    content_hash = snapshot_content_hash(options, annotation_ids)
    existing = DatasetSnapshot.objects.filter(project=project, content_hash=content_hash).first()
    if existing is not None:
        return FreezeResult(existing, created=False)
    path = snapshot_path(project, content_hash, options)
    path.parent.mkdir(parents=True, exist_ok=True)
    counted = exports.Counted(exports.export_rows(project, options, only_ids=annotation_ids))
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        with partial.open("wb") as out:
            for chunk in exports.export_chunks(counted, options.format):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    snapshot = DatasetSnapshot(
        project=project,
        name=name or f"{options.dataset} {options.format}",
        filter=options.as_filter(),
        annotation_ids=annotation_ids,
        row_counts={**counted.counts, "rows": sum(counted.counts.values())},
        content_hash=content_hash,
        export_path=str(path),
        created_by=created_by,
    )
    snapshot.full_clean(exclude=["created_by"])
    try:
        with transaction.atomic():
            snapshot.save()
    except IntegrityError:  # the same snapshot, frozen at the same moment by someone else
        return FreezeResult(DatasetSnapshot.objects.get(project=project, content_hash=content_hash), created=False)
    return FreezeResult(snapshot, created=True)
