"""Fixtures for the REST API: API clients signed in by token, and a project with prompts of every task kind."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotate import services
from tests.conftest import jsonl

ROWS = [
    {"prompt": f"Question {i}?", "completions": [f"Answer {i}a", f"Answer {i}b", f"Answer {i}c", f"Answer {i}d"]}
    for i in range(3)
]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Each test makes several users; the production hasher's key stretching would cost ~0.2 s per user."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_throttles():
    """Throttle counters live in the cache, which outlives a test's database: start every test at zero."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _own_artifacts(artifacts):
    """Snapshot files go to the test's own folder."""
    return artifacts


def token_client(user=None) -> APIClient:
    """An API client that sends `Authorization: Token …` for `user` (anonymous without one)."""
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def imported(project):
    services.prompts_import(project=project, data=jsonl(*ROWS), filename="p.jsonl")
    return project


@pytest.fixture
def as_labeler(labeler):
    return token_client(labeler)


@pytest.fixture
def as_researcher(researcher):
    return token_client(researcher)


@pytest.fixture
def as_admin(admin_user):
    return token_client(admin_user)


def error_of(response) -> dict:
    """The `error` object of an error response, after checking the body has exactly the documented shape."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message", "fields"} <= set(body["error"]), body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]
