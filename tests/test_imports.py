"""The package's import graph: no cycles anywhere in zooscope/, and measures/ never touches torch.nn.

Every import statement counts (module level, inside functions, under ``TYPE_CHECKING``): a lazy import that
closes a loop is still a loop in the design (DESIGN.md, "one direction").
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

import zooscope

ROOT = Path(zooscope.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str], top_level_only: bool = False) -> set[str]:
    """The zooscope modules ``name`` imports (``from pkg import sub`` counts as importing ``pkg.sub``);
    ``top_level_only``: only the statements that run when the module is imported (not inside functions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    nodes = ast.walk(tree) if not top_level_only else (
        n for stmt in tree.body if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        for n in ast.walk(stmt))
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                out.add(f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod)
    return {m for m in out if m in known and m != name}


def import_graph(top_level_only: bool = False) -> nx.DiGraph:
    mods = _modules()
    g = nx.DiGraph()
    g.add_nodes_from(mods)
    for name, path in mods.items():
        g.add_edges_from((name, dep) for dep in _imports(name, path, set(mods), top_level_only))
    return g


def test_the_graph_is_read():
    g = import_graph()
    assert g.has_edge("zooscope.zoo.zoo", "zooscope.zoo.similar")
    assert g.has_edge("zooscope.zoo.similar", "zooscope.zoo.indices")
    assert g.number_of_edges() > 100


def test_no_import_cycle_in_the_package():
    cycles = list(nx.simple_cycles(import_graph()))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join([*c, c[0]]) for c in cycles[:10])


def test_the_zoo_pipeline_imports_only_forward():
    order = ["catalog", "settings", "probes", "vectors", "indices", "embedrun", "similar", "select", "check",
             "curate", "zoo"]
    g = import_graph()
    rank = {f"zooscope.zoo.{m}": i for i, m in enumerate(order)}
    backward = [(a, b) for a, b in g.edges if a in rank and b in rank and rank[b] >= rank[a]]
    siblings = {f"zooscope.zoo.{m}" for m in ("similar", "select", "check", "curate")}
    assert not backward, f"imports against the pipeline's order: {backward}"
    assert not [(a, b) for a, b in g.edges if a in siblings and b in siblings], "queries must not import each other"
    assert not [a for a, b in g.edges if b == "zooscope.zoo.zoo" and a.startswith("zooscope.zoo.")]


@pytest.mark.parametrize("path", sorted((ROOT / "measures").glob("*.py")), ids=lambda p: p.name)
def test_measures_never_import_torch_nn(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bad += [a.name for a in node.names if a.name.startswith("torch.nn")]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("torch.nn") or (node.module == "torch" and any(a.name == "nn"
                                                                                     for a in node.names)):
                bad.append(node.module)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "torch" \
                and node.attr == "nn":
            bad.append("torch.nn (attribute)")
    assert not bad, f"{path.name} uses {bad}: nn.Module code belongs in zooscope/embed/"


def test_training_and_demo_stay_off_the_cli_import_path():
    g = import_graph()
    cli = [m for m in g if m == "zooscope.cli" or m.startswith("zooscope.cli.")]
    reach = set().union(*(nx.descendants(g, m) for m in cli))
    assert "zooscope.demo" not in reach
    assert not any(d.startswith("zooscope.cli") for d in nx.descendants(g, "zooscope.demo"))
    # the one training loop is reached only by select's opt-in refinement (finetune_top) and the Task2Vec probe
    # network's training (a writer: embed / configure), never on import
    loaded = import_graph(top_level_only=True)
    reach = set().union(*(nx.descendants(loaded, m) for m in cli))
    assert "zooscope.training" not in reach
    assert {a for a, b in g.edges if b == "zooscope.training" and a.startswith("zooscope.")} <= {
        "zooscope.zoo.select", "zooscope.zoo.probes", "zooscope._demo_compare", "zooscope.demo"}


def test_a_registry_plugin_module_that_fails_to_import_raises():
    from zooscope._registry import Registry

    reg = Registry("widget", modules=("zooscope.no_such_plugin_module",))
    with pytest.raises(ModuleNotFoundError, match="no_such_plugin_module"):
        reg.available()
    with pytest.raises(ModuleNotFoundError):  # and again: a failed load is not remembered as done
        reg.get("anything")


def test_embedding_kinds_load_through_the_registry():
    from zooscope.embed._kinds import EMBEDDINGS

    assert {"cka", "task2vec", "gradsketch"} <= set(EMBEDDINGS.available())
