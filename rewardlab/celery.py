"""The Celery application. Workers: `celery -A rewardlab.celery worker -Q default` for light tasks and
`celery -A rewardlab.celery worker -Q training --concurrency 1 --prefetch-multiplier 1` on GPU machines."""

import os

from celery import Celery
from celery.signals import setup_logging

from rewardlab import broker
from rewardlab.logging import configure_celery_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rewardlab.settings")
broker.register()  # the embedded broker polls every 0.1 s, not 1 s

app = Celery("rewardlab")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Workers and beat log through settings.LOGGING (one JSON object a line in production, with each run's run_id)
# instead of Celery's own format; their level is REWARDLAB_LOG_LEVEL.
setup_logging.connect(configure_celery_logging, weak=False)
