"""The `ml` package is pure torch + transformers: importing every module of it loads no Django, Celery, kombu or
SQLAlchemy (a GPU machine can run it with nothing else), and no module of it imports the apps."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ML = ROOT / "ml"
FORBIDDEN = ("django", "celery", "kombu", "sqlalchemy", "rest_framework", "annotate", "training", "rewardlab")


def ml_modules() -> list[str]:
    return sorted(f"ml.{path.stem}" for path in ML.glob("*.py") if path.stem != "__init__")


def test_no_ml_module_imports_django_celery_or_the_apps():
    for path in sorted(ML.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


def test_importing_all_of_ml_in_a_fresh_interpreter_loads_no_django_celery_kombu_or_sqlalchemy():
    modules = ml_modules()
    assert {"ml.config", "ml.reward", "ml.sft", "ml.dpo", "ml.ppo", "ml.sampling", "ml.policy"} <= set(modules)
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "loaded = ('django', 'celery', 'kombu', 'sqlalchemy', 'annotate', 'training', 'rewardlab')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in loaded))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}  # no DJANGO_SETTINGS_MODULE to lean on
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "[]", out.stdout
