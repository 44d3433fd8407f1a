import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rewardlab.settings")
application = get_wsgi_application()

# Import every view now (the URLconf), then move everything loaded so far out of the garbage collector's reach:
# these objects live as long as the process, and without this each full collection walks all of them (~50 ms of a
# request's time on a small machine, a web worker's main latency tail). Under gunicorn this runs once per worker.
get_resolver().url_patterns  # noqa: B018 - the access imports every view
gc.collect()
gc.freeze()
