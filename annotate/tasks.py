"""Thin Celery tasks for the human side: take ids, call a service."""

from celery import shared_task

from annotate import services


@shared_task(name="annotate.tasks.leases_release_expired", ignore_result=True)
def leases_release_expired() -> int:
    """Beat runs this every minute: expired leases go back to the pool."""
    return services.leases_release_expired()
