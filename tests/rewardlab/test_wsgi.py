"""The WSGI entry point gunicorn loads."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_loading_the_app_imports_every_view_and_freezes_them_out_of_the_collectors_reach():
    code = (
        "import gc, sys, rewardlab.wsgi as w; "
        "print(gc.get_freeze_count(), callable(w.application), 'annotate.api.views' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    frozen, callable_app, views_loaded = result.stdout.split()
    assert int(frozen) > 50_000 and callable_app == "True" and views_loaded == "True"
