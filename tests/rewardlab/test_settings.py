"""Production mode: the settings that DJANGO_DEBUG=0 and friends give, checked in a fresh process each time
(settings are read once, at import)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PREFIXES = ("DJANGO_", "REWARDLAB_", "DATABASE_", "CELERY_", "AXES_")

# Prints what a production process would use: a few settings and the headers of two real responses.
PROBE = """
import json, django
django.setup()
from django.conf import settings
from django.test import Client
client = Client(HTTP_HOST="rewardlab.example.org")
secure = client.get("/api/me/", secure=True)
plain = client.get("/api/me/")
print(json.dumps({
    "settings": {name: getattr(settings, name, None) for name in [
        "DEBUG", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS",
        "REWARDLAB_LOG_FORMAT",
    ]},
    "console_formatter": settings.LOGGING["handlers"]["console"]["formatter"],
    "secure": {"status": secure.status_code, "headers": dict(secure.headers)},
    "plain": {"status": plain.status_code, "location": plain.headers.get("Location")},
}))
"""


def production_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(PREFIXES)}
    env.update(
        DJANGO_SETTINGS_MODULE="rewardlab.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(48),  # 64 random characters
        DJANGO_ALLOWED_HOSTS="rewardlab.example.org",
        DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3",
        REWARDLAB_VAR_DIR=str(tmp_path),
    )
    env.update(overrides)
    return env


def probe(env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_check_deploy_passes_under_production_settings(tmp_path):
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_check_deploy_flags_a_production_process_with_the_demo_key(tmp_path):
    """The guard works: without DJANGO_SECRET_KEY, check --deploy fails."""
    env = production_env(tmp_path)
    del env["DJANGO_SECRET_KEY"]
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0 and "security.W009" in done.stderr


EXPECTED_CSP = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "font-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def parse_csp(header: str) -> dict[str, str]:
    return dict(part.strip().split(" ", 1) for part in header.split(";") if part.strip())


def test_production_cookies_are_secure_and_responses_carry_the_security_headers(tmp_path):
    result = probe(production_env(tmp_path))
    assert result["settings"] == {
        "DEBUG": False,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 3600,
        "REWARDLAB_LOG_FORMAT": "json",
    }
    assert result["console_formatter"] == "json"
    headers = result["secure"]["headers"]
    assert result["secure"]["status"] == 401  # the API asks for credentials
    assert parse_csp(headers["Content-Security-Policy"]) == EXPECTED_CSP
    assert "unsafe-inline" not in headers["Content-Security-Policy"]
    assert headers["Strict-Transport-Security"] == "max-age=3600; includeSubDomains"
    assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"
    assert len(headers["X-Request-ID"]) == 32
    # Plain HTTP is sent to HTTPS.
    assert result["plain"] == {"status": 301, "location": "https://rewardlab.example.org/api/me/"}


def test_the_policy_can_be_report_only_and_the_log_format_chosen(tmp_path):
    env = production_env(
        tmp_path, REWARDLAB_CSP_REPORT_ONLY="1", REWARDLAB_LOG_FORMAT="plain", DJANGO_HSTS_SECONDS="31536000"
    )
    result = probe(env)
    headers = result["secure"]["headers"]
    assert "Content-Security-Policy" not in headers
    assert parse_csp(headers["Content-Security-Policy-Report-Only"]) == EXPECTED_CSP
    assert result["console_formatter"] == "plain"
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_an_unknown_log_format_is_refused_at_start(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=production_env(tmp_path, REWARDLAB_LOG_FORMAT="xml"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0 and "REWARDLAB_LOG_FORMAT" in done.stderr


def test_the_demo_sends_the_same_policy_and_logs_plain_text(tmp_path):
    env = production_env(tmp_path)
    del env["DJANGO_DEBUG"], env["DJANGO_SECRET_KEY"]
    result = probe(env)
    assert result["settings"]["DEBUG"] is True and result["console_formatter"] == "plain"
    assert parse_csp(result["secure"]["headers"]["Content-Security-Policy"]) == EXPECTED_CSP


@pytest.mark.django_db
def test_pages_carry_the_policy_and_no_inline_script_or_style(client):
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    assert parse_csp(response["Content-Security-Policy"]) == EXPECTED_CSP
    html = response.content.decode()
    assert "<script>" not in html and "<style" not in html and "style=" not in html
