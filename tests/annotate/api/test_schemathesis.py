"""Property-based run of the read endpoints against a live server: for requests generated from the schema (real
ids and random ones, random filters and pages), no response is a server error and every response matches
the schema. Small on purpose (a few hundred requests); deselect with `-m "not schemathesis"`."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from annotate import services
from annotate.models import Task
from annotate.roles import RoleName
from tests.annotate.api.conftest import ROWS, token_client
from tests.conftest import jsonl
from tests.simulate import simulate

pytestmark = [pytest.mark.schemathesis, pytest.mark.django_db(transaction=True)]

EXAMPLES_PER_OPERATION = 40


@pytest.fixture
def live_data(make_user):
    """A project with judgements of every kind, and an admin (who holds every role) to read it all."""
    project = services.project_create(
        name="Fuzzed", slug="fuzzed", import_task_kinds=["demonstrate", "rank", "compare", "rate"]
    )
    services.prompts_import(project=project, data=jsonl(*ROWS), filename="p.jsonl")
    simulate(project, {make_user(RoleName.LABELER): 0.1, make_user(RoleName.LABELER): 0.3}, tasks_each=6)
    admin = make_user(RoleName.ADMIN)
    real = {"slug": project.slug, "task_id": Task.objects.filter(project=project).values_list("id", flat=True)[0]}
    return admin, real


def test_read_endpoints_never_fail_on_generated_requests(live_server, live_data, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "10000/minute", "user": "10000/minute"},
    }
    admin, real = live_data
    client = token_client(admin)
    headers = {"Authorization": client._credentials["HTTP_AUTHORIZATION"]}
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/").include(method="GET")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7

    for operation in operations:
        params = {p.name for p in operation.path_parameters}
        real_ids = {name: value for name, value in real.items() if name in params}
        cases = st.one_of(operation.as_strategy(), operation.as_strategy(path_parameters=real_ids))

        @hypothesis_settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases)
        def check(case):
            response = case.call(base_url=live_server.url, headers=headers)
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

        check()
