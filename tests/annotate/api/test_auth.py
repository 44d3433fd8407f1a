"""Signing in to the API: tokens (behind django-axes), sessions with CSRF, and who-am-I."""

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.annotate.api.conftest import error_of, token_client
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

TOKEN_URL = reverse("api:token")
ME_URL = reverse("api:me")


def test_a_token_from_username_and_password_signs_api_requests(labeler):
    response = APIClient().post(TOKEN_URL, {"username": labeler.username, "password": PASSWORD}, format="json")
    assert response.status_code == 200
    key = response.json()["token"]
    assert key == Token.objects.get(user=labeler).key

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    me = client.get(ME_URL).json()
    assert me["username"] == labeler.username
    assert me["roles"] == ["labeler"]
    assert me["token"]["hint"] == key[:6] + "…"


def test_an_admin_holds_every_role(admin_user):
    assert token_client(admin_user).get(ME_URL).json()["roles"] == ["labeler", "researcher", "admin"]


def test_a_wrong_password_is_a_400_with_the_error_body(labeler):
    response = APIClient().post(TOKEN_URL, {"username": labeler.username, "password": "wrong"}, format="json")
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid"
    assert "Unable to log in" in error["message"]


def test_token_requests_are_throttled_by_axes_after_repeated_failures(labeler, settings):
    client = APIClient(REMOTE_ADDR="10.0.0.7")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(TOKEN_URL, {"username": labeler.username, "password": "wrong"}, format="json")
    # Locked out: even the right password gets no token.
    response = client.post(TOKEN_URL, {"username": labeler.username, "password": PASSWORD}, format="json")
    assert response.status_code == 429
    assert error_of(response)["code"] == "locked_out"
    assert not Token.objects.filter(user=labeler).exists()
    # Another address is not locked out (the lockout is per username and address).
    other = APIClient(REMOTE_ADDR="10.0.0.8")
    assert other.post(TOKEN_URL, {"username": labeler.username, "password": PASSWORD}, format="json").status_code == 200


def test_a_token_of_a_deactivated_user_no_longer_works(labeler):
    client = token_client(labeler)
    labeler.is_active = False
    labeler.save(update_fields=["is_active"])
    response = client.get(ME_URL)
    assert response.status_code == 401
    assert error_of(response)["code"] == "authentication_failed"


def test_anonymous_requests_get_401_with_a_token_challenge():
    response = APIClient().get(reverse("api:project-list"))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert error_of(response)["code"] == "not_authenticated"


def test_session_auth_reads_without_csrf_but_needs_it_for_unsafe_methods(imported, labeler):
    client = Client(enforce_csrf_checks=True)
    client.force_login(labeler)
    assert client.get(reverse("api:project-list")).status_code == 200

    lease_url = reverse("api:lease", args=[imported.slug])
    response = client.post(lease_url, {}, content_type="application/json")
    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "permission_denied" and "CSRF" in error["message"]

    client.get(reverse("home"))  # a page sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    response = client.post(lease_url, {}, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200


def test_token_auth_needs_no_csrf(imported, labeler):
    client = token_client(labeler)
    client.enforce_csrf_checks = True
    assert client.post(reverse("api:lease", args=[imported.slug]), {}, format="json").status_code == 200
