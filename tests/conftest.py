"""Shared fixtures: a project and one user per role, built through the services (never raw saves)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from annotate import services
from annotate.models import Project
from annotate.roles import RoleName
from tests.tiny_models import tiny_reward_backbone

PASSWORD = "correct-horse-battery"


@pytest.fixture
def make_user(db):
    counter = {"n": 0}

    def make(role: RoleName | str, username: str | None = None):
        counter["n"] += 1
        name = username or f"{RoleName(role).value}{counter['n']}"
        return services.user_create_with_role(username=name, password=PASSWORD, role=role)

    return make


@pytest.fixture
def labeler(make_user):
    return make_user(RoleName.LABELER, "lena")


@pytest.fixture
def researcher(make_user):
    return make_user(RoleName.RESEARCHER, "rafa")


@pytest.fixture
def admin_user(make_user):
    return make_user(RoleName.ADMIN, "ada")


@pytest.fixture
def project(db) -> Project:
    return services.project_create(
        name="Helpful assistant",
        slug="helpful",
        import_task_kinds=["demonstrate", "rank", "compare", "rate"],
        ranking_k=4,
    )


@pytest.fixture
def artifacts(settings, tmp_path):
    """Checkpoints and snapshot files go to the test's own folder."""
    settings.REWARDLAB_ARTIFACTS_DIR = tmp_path / "artifacts"
    return settings.REWARDLAB_ARTIFACTS_DIR


def jsonl(*rows) -> bytes:
    """Rows as a JSONL file; a `bytes` row is written verbatim (for malformed lines)."""
    return b"\n".join(r if isinstance(r, bytes) else json.dumps(r).encode() for r in rows) + b"\n"


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    return tiny_reward_backbone(tmp_path_factory.mktemp("tiny-bert"))
