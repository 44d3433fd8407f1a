"""The project as a whole: system checks pass, migrations match the models, settings read the environment."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]


def test_manage_py_check_passes():
    call_command("check", fail_level="WARNING")


@pytest.mark.django_db
def test_migrations_are_in_sync_with_the_models():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_settings_take_database_and_broker_from_the_environment(tmp_path):
    code = (
        "import django, json; from django.conf import settings; django.setup();"
        "print(json.dumps([settings.DATABASES['default']['ENGINE'], settings.DATABASES['default'].get('NAME'),"
        " settings.CELERY_BROKER_URL]))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "rewardlab.settings", "REWARDLAB_VAR_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    embedded = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert embedded.stdout.strip() == (
        f'["django.db.backends.sqlite3", "{tmp_path}/rewardlab.sqlite3", "sqla+sqlite:///{tmp_path}/celery-broker.sqlite3"]'
    )
    env.update(DATABASE_URL="postgres://u@db.example:5432/rl", CELERY_BROKER_URL="redis://cache:6379/1")
    production = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert production.stdout.strip() == '["django.db.backends.postgresql", "rl", "redis://cache:6379/1"]'


@pytest.mark.django_db
def test_role_groups_exist_after_migrate_with_their_permissions():
    from django.contrib.auth.models import Group

    perms = {g.name: set(g.permissions.values_list("codename", flat=True)) for g in Group.objects.all()}
    assert perms["labeler"] == {"label"}
    assert "view_data" in perms["researcher"] and "label" not in perms["researcher"]
    assert {"manage_project", "add_project", "change_user", "view_trainingrun"} <= perms["admin"]


def test_importing_the_project_package_loads_no_celery_until_django_is_set_up():
    code = (
        "import sys, rewardlab, rewardlab.logging\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'celery', 'kombu', 'sqlalchemy', 'training'}))\n"
        "import django; django.setup()\n"
        "from celery import current_app; from django.conf import settings\n"
        "print(current_app.main, current_app.conf.broker_url == settings.CELERY_BROKER_URL)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "rewardlab.settings"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "rewardlab True"]
