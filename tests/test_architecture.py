"""The house's shape: imports go one way (project -> training -> annotate -> ml), and no module of ours takes part in
an import circle, late imports inside functions included. `python scripts/import_graph.py` prints the same."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
import_graph = importlib.util.module_from_spec(spec)
spec.loader.exec_module(import_graph)


def test_imports_go_only_the_allowed_ways():
    assert import_graph.forbidden(import_graph.graph()) == []


def test_no_module_of_ours_is_in_an_import_circle():
    assert import_graph.circles(import_graph.graph()) == []


def test_the_checker_sees_forbidden_imports_and_circles():
    edges = {
        "annotate.views": {"training.selectors"},  # annotate may not import the training app
        "ml.reward": {"annotate.models"},  # ml imports none of ours
        "training.services": {"training.tasks"},
        "training.tasks": {"training.services"},
        "training.selectors": {"annotate.models", "ml.statistics"},
    }
    assert import_graph.forbidden(edges) == [("annotate.views", "training.selectors"), ("ml.reward", "annotate.models")]
    assert import_graph.circles(edges) == [["training.services", "training.tasks"]]


def test_late_imports_inside_functions_count(tmp_path, monkeypatch):
    for name, text in {
        "annotate/__init__.py": "",
        "annotate/chat.py": "def send():\n    from training.tasks import chat_generate\n",
        "training/__init__.py": "",
        "training/tasks.py": "from annotate import chat\n",
        "ml/__init__.py": "",
        "rewardlab/__init__.py": "",
    }.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(import_graph, "ROOT", tmp_path)
    edges = import_graph.graph()
    assert ("annotate.chat", "training.tasks") in import_graph.forbidden(edges)
    assert import_graph.circles(edges) == [["annotate.chat", "training.tasks"]]
