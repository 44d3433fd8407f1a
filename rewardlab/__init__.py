"""RewardLab: the Django project package and the training side."""

from rewardlab.celery import app as celery_app

__all__ = ["celery_app"]
