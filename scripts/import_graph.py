"""The import graph of RewardLab's own code: which package imports which, every import that breaks the allowed
directions, and every import circle among the modules. Imports inside functions count like the others (a circle
held together by a late import is still a circle).

    python scripts/import_graph.py            # the package graph, forbidden imports and circles; exit 1 on any
    python scripts/import_graph.py --modules  # every module's imports of our own modules

Allowed directions (DESIGN.md): the project package `rewardlab` composes the apps; `training -> annotate`,
`training -> ml`, `annotate -> ml`; `ml` imports none of them, and no app imports the project package.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rewardlab", "annotate", "training", "ml")
ALLOWED = {
    "rewardlab": {"rewardlab", "annotate", "training", "ml"},
    "training": {"training", "annotate", "ml"},
    "annotate": {"annotate", "ml"},
    "ml": {"ml"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                found[module_name(path)] = path
    return found


def resolve(name: str, known: dict[str, Path]) -> str | None:
    """The module of ours that `name` (a module, or a name inside one) refers to."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*parent, base] if base else parent)
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for name in names:
            target = resolve(name, known)
            if target and target != module and name.split(".")[0] in PACKAGES:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {module: imports_of(module, path, known) for module, path in known.items()}


def forbidden(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    bad = []
    for source, targets in edges.items():
        for target in targets:
            allowed = ALLOWED[source.split(".")[0]]
            if target.split(".")[0] not in allowed:
                bad.append((source, target))
    return sorted(bad)


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def package_edges(edges: dict[str, set[str]]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for source, targets in edges.items():
        for target in targets:
            a, b = source.split(".")[0], target.split(".")[0]
            if a != b:
                counts[a][b] += 1
    return counts


def main(argv: list[str]) -> int:
    edges = graph()
    if "--modules" in argv:
        for source in sorted(edges):
            print(f"{source} -> {', '.join(sorted(edges[source])) or '(none of ours)'}")
        return 0
    print("Imports across packages (module -> module):")
    counts = package_edges(edges)
    for source in PACKAGES:
        for target, n in sorted(counts[source].items()):
            print(f"  {source} -> {target}: {n}")
    bad = forbidden(edges)
    print(f"Forbidden imports: {len(bad)}")
    for source, target in bad:
        print(f"  {source} -> {target}")
    loops = circles(edges)
    print(f"Import circles: {len(loops)}")
    for loop in loops:
        print(f"  {' <-> '.join(loop)}")
    return 1 if bad or loops else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
