"""The import graph of ``src/mlupdate``: arrows point only down the layers, and there are no cycles.

The graph is read with ``ast`` from the source, counting imports inside functions too (they run, later);
imports under ``if TYPE_CHECKING:`` are left out (they never run), and so is a module's import of its own
enclosing package (Python has run the package's ``__init__`` before any module inside it: the registries'
families import ``register`` from it). ``from a import b`` is an arrow to the module ``a.b`` when there is
one, else to ``a``. The layer order is the one docs/architecture.md describes.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

#: The layers, lowest first; a module may import its own layer and those below. A module belongs to the
#: layer of the longest name listed that it is, or is inside of.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("mlupdate.errors", "mlupdate.version", "mlupdate.extras"),
    ("mlupdate.features",),
    ("mlupdate.spec",),
    ("mlupdate.layers", "mlupdate.ops", "mlupdate.models"),
    ("mlupdate.graph",),
    ("mlupdate.runtime",),
    ("mlupdate.update", "mlupdate.authoring"),
    ("mlupdate.kinds",),
    # The public API: what mlupdate/__init__ exports (and the task's parameter checks), dispatching through kinds/.
    ("mlupdate", "mlupdate.runtime.model", "mlupdate.update.task", "mlupdate.update.parameters",
     "mlupdate.authoring.lint", "mlupdate.authoring.updatable", "mlupdate.authoring.convert_torch",
     "mlupdate.authoring.convert_pipeline",
     "mlupdate.authoring.keras_h5", "mlupdate.authoring.knn"),
    ("mlupdate.federated", "mlupdate.demo"),
    ("mlupdate.cli", "mlupdate.web", "mlupdate.__main__"),
)

#: Upward arrows that another branch of this round removes; the lead deletes each entry with that merge.
PENDING: set[tuple[str, str]] = set()


def modules(src: Path = SRC) -> dict[str, Path]:
    """Every module of the package by dotted name (``mlupdate.kinds`` for ``kinds/__init__.py``)."""
    out = {}
    for path in sorted((src / "mlupdate").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _imports(tree: ast.AST):
    for node in ast.iter_child_nodes(tree):
        if _type_checking(node):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _imports(node)


def graph(src: Path = SRC) -> dict[str, set[str]]:
    """Module -> the package modules it imports (anywhere in its body)."""
    mods = modules(src)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for target in targets:
                while target and target not in mods:  # `import a.b.c` of a name inside a module
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    edges[name].add(target)
    return edges


def layer_of(module: str) -> int | None:
    """The index in :data:`LAYERS` of ``module``'s layer (None when no listed name covers it)."""
    best, found = -1, None
    for i, names in enumerate(LAYERS):
        for n in names:
            covers = module == n or (n != "mlupdate" and module.startswith(n + "."))
            if covers and len(n) > best:
                best, found = len(n), i
    return found


def upward(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Every import of a module in a higher layer than the importer's."""
    return sorted((a, b) for a, targets in edges.items() for b in targets
                  if layer_of(a) is not None and layer_of(b) is not None and layer_of(b) > layer_of(a))


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer():
    assert [m for m in modules() if layer_of(m) is None] == []


def test_no_import_points_up():
    assert [arrow for arrow in upward(graph()) if arrow not in PENDING] == []


def test_no_cycles_even_through_function_level_imports():
    assert cycles(graph()) == []


def test_the_graph_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "mlupdate"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "errors.py").write_text("def f():\n    from mlupdate.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("from . import b\n")
    (pkg / "sub" / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import mlupdate.cli\n"
                                      "import mlupdate.errors\nfrom mlupdate.sub import b as again\n"
                                      "from mlupdate import sub\n")
    edges = graph(tmp_path)
    assert edges == {"mlupdate": set(), "mlupdate.errors": {"mlupdate.sub.b"}, "mlupdate.sub": {"mlupdate.sub.b"},
                     "mlupdate.sub.b": {"mlupdate.errors"}}
    assert cycles(edges) == [["mlupdate.errors", "mlupdate.sub.b"]]
    assert upward({"mlupdate.spec.io": {"mlupdate.kinds"}, "mlupdate.cli": {"mlupdate.spec.io"}}) == [
        ("mlupdate.spec.io", "mlupdate.kinds")]
