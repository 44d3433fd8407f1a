"""RewardLab: the Django project package (settings, urls, Celery, logging, health). Empty on purpose: importing
anything under it loads no Celery; the app is loaded by `rewardlab.apps.ProjectConfig.ready()`, and workers start
with `celery -A rewardlab.celery`."""
