"""Structured logs: JSON lines with the request, user and run they belong to; a request id on every response."""

from __future__ import annotations

import io
import json
import logging
import re
from types import SimpleNamespace

import pytest
from django.http import HttpResponse
from django.utils.functional import SimpleLazyObject
from rest_framework.authtoken.models import Token

from annotate.roles import RoleName
from rewardlab.logging import ContextFilter, JSONFormatter, log_context
from rewardlab.middleware import RequestIDMiddleware
from training import runner


@pytest.fixture
def json_lines():
    """json_lines(logger_name) -> a function returning the lines that logger wrote so far, parsed."""
    attached = []

    def attach(name: str = ""):
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JSONFormatter())
        handler.addFilter(ContextFilter())
        logger = logging.getLogger(name)
        attached.append((logger, handler, logger.level))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)

        def lines() -> list[dict]:
            text = stream.getvalue()
            assert text.endswith("\n") or not text
            return [json.loads(line) for line in text.splitlines()]

        return lines

    yield attach
    for logger, handler, level in attached:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_the_formatter_writes_one_json_object_a_line_with_the_fields(json_lines):
    lines = json_lines("tests.logging")
    logger = logging.getLogger("tests.logging")
    with log_context(request_id="req-1", user_id=7):
        logger.info("hello %s\nsecond line", "world", extra={"custom": {"a": 1}, "obj": object()})
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            logger.exception("it failed")
    logger.warning("outside")

    first, failure, outside = lines()
    assert first["message"] == "hello world\nsecond line"
    assert first["level"] == "INFO" and first["logger"] == "tests.logging"
    assert first["timestamp"].startswith("20") and first["timestamp"].endswith("+00:00")
    assert first["request_id"] == "req-1" and first["user_id"] == 7 and "run_id" not in first
    assert first["custom"] == {"a": 1} and first["obj"].startswith("<object object")
    assert failure["level"] == "ERROR"
    assert failure["exc_info"].startswith("Traceback") and "ZeroDivisionError" in failure["exc_info"]
    assert "request_id" not in outside and "user_id" not in outside  # the context ended with the block


def test_a_log_line_with_an_extra_run_id_carries_it(json_lines):
    lines = json_lines("training.runner")
    logging.getLogger("training.runner").info("run 5: step 1/10", extra={"run_id": 5})
    (line,) = lines()
    assert line["run_id"] == 5 and line["message"] == "run 5: step 1/10"


def test_every_line_logged_while_a_run_executes_carries_its_run_id(json_lines, monkeypatch):
    """What the trainers and the libraries log has no `extra`; the runner puts the run in the context."""
    lines = json_lines("tests.trainer")
    monkeypatch.setattr(runner, "close_old_connections", lambda: None)
    monkeypatch.setattr(runner.services, "run_claim", lambda run_id, worker: SimpleNamespace(pk=run_id, cycle_id=None))
    monkeypatch.setattr(
        runner, "_execute", lambda run, worker: logging.getLogger("tests.trainer").info("epoch 1") or "succeeded"
    )
    assert runner.run_execute(run_id=42, worker="w1") == "succeeded"
    logging.getLogger("tests.trainer").info("after the run")
    during, after = lines()
    assert during["run_id"] == 42 and "run_id" not in after


@pytest.mark.django_db
def test_a_request_gets_an_id_header_and_one_access_line_with_the_user(client, make_user, json_lines):
    access = json_lines("rewardlab.request")
    user = make_user(RoleName.LABELER)
    client.force_login(user)
    response = client.get("/")
    assert response.status_code == 200
    request_id = response["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)  # a uuid4 hex
    (line,) = access()
    assert line["logger"] == "rewardlab.request" and line["level"] == "INFO"
    assert line["request_id"] == request_id and line["user_id"] == user.pk
    assert line["method"] == "GET" and line["path"] == "/" and line["status"] == 200
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["message"].startswith("GET / 200 ")


def test_lines_logged_while_a_request_is_served_carry_its_id_and_then_its_user(rf, json_lines):
    lines = json_lines("tests.view")
    user = SimpleNamespace(pk=9, is_authenticated=True)

    def view(request):
        logging.getLogger("tests.view").info("before authentication")  # never forces the user's lookup
        assert request.user.pk == 9
        logging.getLogger("tests.view").info("after")
        return HttpResponse("ok")

    request = rf.get("/somewhere/", headers={"X-Request-ID": "abc"})
    request.user = SimpleLazyObject(lambda: user)
    response = RequestIDMiddleware(view)(request)
    assert response["X-Request-ID"] == "abc"
    before, after = lines()
    assert before["request_id"] == "abc" and "user_id" not in before
    assert after["request_id"] == "abc" and after["user_id"] == 9


@pytest.mark.django_db
def test_an_incoming_sane_request_id_is_kept(client, json_lines):
    access = json_lines("rewardlab.request")
    response = client.get("/accounts/login/", headers={"X-Request-ID": "lb-7f3a.01_X"})
    assert response["X-Request-ID"] == "lb-7f3a.01_X"
    (line,) = access()
    assert line["request_id"] == "lb-7f3a.01_X" and "user_id" not in line  # anonymous


@pytest.mark.django_db
@pytest.mark.parametrize("incoming", ["", "has space", "x" * 65, 'quote"d', "new\nline", "ünïcode", "a;b"])
def test_a_bad_incoming_request_id_is_replaced(client, json_lines, incoming):
    access = json_lines("rewardlab.request")
    response = client.get("/accounts/login/", headers={"X-Request-ID": incoming})
    request_id = response["X-Request-ID"]
    assert request_id != incoming and len(request_id) == 32
    (line,) = access()
    assert line["request_id"] == request_id


@pytest.mark.django_db
def test_an_api_request_by_token_logs_its_user_and_an_error_line_carries_the_request_id(client, make_user, json_lines):
    lines = json_lines("")  # the root: the access line and django.request's line for the 401
    user = make_user(RoleName.RESEARCHER)
    token = Token.objects.create(user=user)
    response = client.get("/api/me/", headers={"Authorization": f"Token {token.key}"})
    assert response.status_code == 200
    (access,) = [line for line in lines() if line["logger"] == "rewardlab.request"]
    assert access["user_id"] == user.pk and access["request_id"] == response["X-Request-ID"]

    response = client.get("/api/me/", headers={"X-Request-ID": "probe-1"})
    assert response.status_code == 401
    unauthorized = [line for line in lines() if line["logger"] == "django.request"]
    assert unauthorized[-1]["request_id"] == "probe-1" and unauthorized[-1]["status_code"] == 401
