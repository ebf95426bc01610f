"""The package's structure: its folders are layers, each importing only from the layers below it.

Read from the source (nothing is imported): every ``import`` of a ``neuronviz`` module, at the top of
a file or inside a function, counts, except those under ``if TYPE_CHECKING:`` (types only). The
checks: no import cycle between modules (a function-level import does not hide one), no import
from a higher layer (the order is ``LAYERS`` below, written down in docs/architecture.md), no
module of ``app/`` sharing its name with one of ``neuronviz/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "neuronviz"

# Lowest first. A module may import from its own layer and the layers before it; layers sharing a
# rank (figures, training) may not import each other. Top-level entry points come last.
LAYERS: list[tuple[str, ...]] = [
    ("infra",),
    ("core",),
    ("data",),
    ("methods",),
    ("workflows",),
    ("figures", "training"),
    ("cli", "testing"),
    ("__main__",),
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(path: Path, modules: set[str]) -> set[str]:
    """The neuronviz modules ``path`` imports (``from a import b`` counts ``a.b`` when it is a module)."""
    found: set[str] = set()
    me = module_name(path) if path.is_relative_to(ROOT) else ""

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names if alias.name.split(".")[0] == "neuronviz")
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0 and child.module.split(".")[0] == "neuronviz":
                for alias in child.names:
                    sub = f"{child.module}.{alias.name}"
                    found.add(sub if sub in modules else child.module)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    found.discard(me)
    return {name for name in found if name in modules}


def graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports(p, modules) for p in paths}


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return sorted(found)


#: Cycles known and not yet broken (none now); any cycle fails the test.
KNOWN_CYCLES: list[list[str]] = []


def test_there_is_no_import_cycle():
    assert [c for c in cycles(graph()) if c not in KNOWN_CYCLES] == []


def test_no_module_imports_from_a_higher_layer():
    upward = []
    for source, targets in graph().items():
        mine = layer(source)
        if mine is None:  # neuronviz/__init__.py: the alias finder, imports nothing
            continue
        for target in targets:
            theirs = layer(target)
            if theirs is None:
                continue
            if RANK[theirs] > RANK[mine] or (RANK[theirs] == RANK[mine] and theirs != mine):
                upward.append(f"{source} -> {target}")
    assert sorted(upward) == []


def test_every_layer_is_in_the_order():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    files = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert folders | files == set(RANK)


def test_app_and_library_module_names_do_not_collide():
    """``app/``'s modules (not its pages, which are named after the page they draw) have names of their own."""
    app_names = {p.stem for p in (ROOT / "app").glob("*.py") if p.stem != "__init__"}
    library = {p.stem for p in PACKAGE.rglob("*.py") if p.stem != "__init__"}
    assert sorted(app_names & library) == []


def test_the_checks_see_a_cycle_and_an_upward_import(tmp_path):
    """The checks can fail: a made-up pair importing each other is a cycle, and core -> workflows is upward."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert RANK["workflows"] > RANK["core"]
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from neuronviz.workflows import analysis\n")
    assert imports(source, {"neuronviz.workflows.analysis", "neuronviz.workflows"}) == {"neuronviz.workflows.analysis"}
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from neuronviz.workflows import analysis\n")
    assert imports(source, {"neuronviz.workflows.analysis"}) == set()


def test_the_docs_point_only_inside_the_repository():
    """README and docs/ name no file outside the repository (a relative link that leaves it, or ``../shared``)."""
    import re

    outside = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        if "../shared" in text:
            outside.append(f"{doc.name}: ../shared")
        for target in re.findall(r"\]\(([^)#\s]+)", text):
            if "://" in target or target.startswith("mailto:"):
                continue
            resolved = (doc.parent / target).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                outside.append(f"{doc.name}: {target}")
    assert outside == []


def test_no_page_reaches_into_another_page_or_the_sidebar():
    """A page changes the session's inputs through app/actions.py, never by importing the sidebar or another page."""
    reaching = []
    for page in sorted((ROOT / "app" / "app_pages").glob("*.py")):
        for node in ast.walk(ast.parse(page.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            reaching += [f"{page.name}: {n}" for n in names if n in ("app.sidebar", "app.main") or "app_pages" in n]
    assert reaching == []


def test_the_library_never_imports_the_app_or_streamlit():
    """Not even inside a function: the command line and notebooks run without the dashboard."""
    offenders = []
    for path in sorted((ROOT / "neuronviz").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            for name in names:
                if name.split(".")[0] in {"app", "streamlit"}:
                    offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []


#: Functions over ~80 lines (``def`` to end, docstring included), each with why it stays whole; its
#: docstring says so too. Any other function over the limit fails the test.
LONG_FUNCTION_LIMIT = 80
LONG_FUNCTIONS = {
    "neuronviz/workflows/sweep.py:eps_sweep": "input checks, then one result record filled field by field",
    "neuronviz/methods/fragility.py:first_layer_fragility": "checks, then one report record filled field by field",
    "neuronviz/methods/attacks/runner.py:run_attack": "one section under the model's lock and the seeded generator",
}


def test_no_function_is_longer_than_the_limit_without_a_reason():
    long = {}
    for folder in ("neuronviz", "app"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    length = (node.end_lineno or node.lineno) - node.lineno + 1
                    if length > LONG_FUNCTION_LIMIT:
                        long[f"{path.relative_to(ROOT)}:{node.name}"] = length
    assert sorted(set(long) - set(LONG_FUNCTIONS)) == []
