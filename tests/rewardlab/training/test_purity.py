"""The training code is pure: no trainer imports Django, the web app or the database (a GPU machine can run it
with nothing else)."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
TRAINING = ROOT / "rewardlab" / "training"


def test_no_training_module_imports_django_or_the_app():
    for path in sorted(TRAINING.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top not in ("django", "annotate", "rest_framework", "celery"), f"{path.name} imports {name}"
                assert top != "rewardlab" or name.startswith("rewardlab.training"), f"{path.name} imports {name}"


def test_importing_every_trainer_loads_no_database_code():
    code = (
        "import sys\n"
        "import rewardlab.training.reward, rewardlab.training.sft, rewardlab.training.dpo, rewardlab.training.ppo\n"
        "loaded = ('django.db', 'django.apps', 'annotate', 'rewardlab.models')\n"
        "print(sorted(m for m in sys.modules if m.startswith(loaded)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
