"""The Celery application. Workers: `celery -A rewardlab worker -Q default` for light tasks and
`celery -A rewardlab worker -Q training --concurrency 1 --prefetch-multiplier 1` on GPU machines."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rewardlab.settings")

app = Celery("rewardlab")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
