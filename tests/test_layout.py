"""The package layout (README, "Layout"): no import cycles between MDFI's modules.

The check is static (``ast``): the imports a module runs when it is imported -- module level,
including ``try``/``if`` bodies, but not inside functions and not under ``if TYPE_CHECKING``
-- form a graph, which must have no cycle.  Imports inside functions are run later and may
go anywhere.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

from conftest import REPO


def module_files(root: Path, package: str) -> Dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the package under ``root``."""
    out = {}
    for p in sorted((root / package).rglob("*.py")):
        parts = list(p.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = p
    return out


def _import_time_nodes(body: List[ast.stmt]):
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
                yield from _import_time_nodes(node.orelse)
            else:
                yield from _import_time_nodes(node.body)
                yield from _import_time_nodes(node.orelse)
        elif isinstance(node, ast.Try):
            for part in (node.body, node.orelse, node.finalbody, *[h.body for h in node.handlers]):
                yield from _import_time_nodes(part)
        elif isinstance(node, ast.With):
            yield from _import_time_nodes(node.body)


def import_graph(root: Path, package: str) -> Dict[str, Set[str]]:
    """Module -> the package's modules it imports at import time."""
    files = module_files(root, package)
    graph: Dict[str, Set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in _import_time_nodes(ast.parse(path.read_text(encoding="utf-8")).body):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in files]
                # `from . import sub` imports the submodule; names that are not modules come
                # from the module itself
                targets = subs + ([target] if len(subs) < len(node.names) else [])
            graph[mod].update(t for t in targets if t in files and t != mod)
    return graph


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    graph = import_graph(REPO, "mdfi")
    assert len(graph) > 60 and "mdfi.cli" in graph and "mdfi.quant.quantize" in graph
    assert "mdfi.darknet.network" in graph["mdfi.quant.quantize"]     # the graph sees real edges
    assert cycles(graph) == []


def test_cycle_check_finds_cycles(tmp_path):
    """The checker itself: a cycle through `from . import x`, a relative import two levels up
    and a module-level `try`; an import inside a function or under TYPE_CHECKING is no edge."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("try:\n    from .sub.c import f\nexcept ImportError:\n    pass\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from ..a import g\n\ndef f():\n    from .. import d\n")
    (pkg / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .sub import c\n"
                              "def g():\n    from .sub import c\n")
    graph = import_graph(tmp_path, "pkg")
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    (pkg / "sub" / "c.py").write_text("def f():\n    from ..a import g\n")
    assert cycles(import_graph(tmp_path, "pkg")) == []
