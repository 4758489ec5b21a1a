"The module layering: no import cycle among knife_repro's modules; the QA layer imports no method."
import ast
from pathlib import Path

import networkx as nx
import pytest

PKG = Path(__file__).resolve().parents[1] / "knife_repro"
# what the QA layer may stand on: the engine and the plumbing below every method
QA_MAY_IMPORT = {"knife_repro.core", "knife_repro.metrics", "knife_repro.training", "knife_repro.models"}


def module_name(path: Path, pkg: Path = PKG) -> str:
    parts = path.relative_to(pkg.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str], pkg: Path = PKG) -> set[str]:
    "The package's modules that `path` imports anywhere (module level or inside a function), by `ast`."
    me = module_name(path, pkg)
    here = me if path.name == "__init__.py" else me.rpartition(".")[0]   # what `from . import` refers to
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            names = [base] + [f"{base}.{a.name}" for a in node.names]   # `from pkg import submodule`
        else:
            continue
        for n in names:
            while n and n not in modules: n = n.rpartition(".")[0]      # a name inside a module: the module
            if n and n != me: out.add(n)
    return out


def import_graph(pkg: Path = PKG) -> nx.DiGraph:
    files = [p for p in pkg.rglob("*.py") if p.name != "_modidx.py"]
    modules = {module_name(p, pkg) for p in files}
    g = nx.DiGraph()
    g.add_nodes_from(modules)
    for p in files:
        g.add_edges_from((module_name(p, pkg), m) for m in imported_modules(p, modules, pkg))
    return g


def cycles(g: nx.DiGraph) -> list[list[str]]:
    "Every import cycle, ignoring a module's import of its own parent package (`from . import X` in data/*)."
    h = g.copy()
    h.remove_edges_from([(a, b) for a, b in g.edges if a.startswith(b + ".")])
    return sorted(nx.simple_cycles(h))


def test_no_import_cycle_among_the_modules():
    g = import_graph()
    assert "knife_repro.qa" in g and g.number_of_edges() > 20        # the parser sees the package's imports
    assert cycles(g) == []


def test_the_qa_layer_imports_no_method():
    g = import_graph()
    assert set(g.successors("knife_repro.qa")) <= QA_MAY_IMPORT, set(g.successors("knife_repro.qa")) - QA_MAY_IMPORT
    assert "knife_repro.baselines" not in set(g.successors("knife_repro.faithfulness"))
    assert "knife_repro.data.spider_eval" not in set(g.successors("knife_repro.data.spider"))


def test_scott_has_no_faithfulness_code_of_its_own():
    src = (PKG / "scott.py").read_text()
    tree = ast.parse(src)
    defs = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    assert not {d for d in defs if "perturb" in d or d.startswith("las")}, defs
    assert "rationale_faithfulness(" in src and "las_eval" not in src and "perturb_ids" not in src


@pytest.mark.parametrize("edge", [
    ("a.py", "from .b import f\n", "b.py", "def f(): pass\ndef g():\n    from pkg.a import h\n"),   # inside a function
    ("a.py", "import pkg.b\n", "b.py", "from . import a\n"),                                        # `from . import module`
])
def test_the_check_finds_a_cycle(tmp_path, edge):
    "The check itself: a two-module package with an import cycle (at module level or in a function) is caught."
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    a, a_src, b, b_src = edge
    (pkg / a).write_text(a_src + "def h(): pass\n")
    (pkg / b).write_text(b_src)
    assert cycles(import_graph(pkg)) == [["pkg.a", "pkg.b"]] or cycles(import_graph(pkg)) == [["pkg.b", "pkg.a"]]
