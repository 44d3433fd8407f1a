"""`/healthz`: the database, the broker and each worker queue's last heartbeat (the checks are the training app's,
which owns the workers' heartbeats)."""

from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from training import health


@require_GET
@never_cache
def healthz(request):
    """200 when all are up, 503 when any is down. No sign-in (load balancers and orchestrators call it); it names no
    host, user or data."""
    result = health.check()
    return JsonResponse(result.as_dict(), status=200 if result.ok else 503)
