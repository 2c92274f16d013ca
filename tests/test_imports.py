"""The package's import graph: no cycles anywhere in zooscope/, layers import only downward, measures/ never
touches torch.nn.

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


# bottom to top; a module may import its own layer and the ones below it, never one above
LAYERS = (("_private",), ("measures",), ("nets",), ("embed",), ("index",), ("plot", "report_html"), ("zoo", "report"),
          ("bench",), ("cli", "demo", "_demo_compare", "__init__"))


def _layer(module: str) -> int:
    """The rank of a module in `LAYERS`: ``zooscope._io`` -> 0 (private helpers), ``zooscope.nets.arch`` -> 2."""
    parts = module.split(".")
    top = "__init__" if len(parts) == 1 else parts[1]
    if top.startswith("_") and top not in ("_demo_compare", "__init__"):
        top = "_private"
    ranks = [i for i, names in enumerate(LAYERS) if top in names]
    assert ranks, f"{module}: give zooscope.{top} a place in LAYERS (tests/test_imports.py) and DESIGN.md"
    return ranks[0]


def test_layers_import_only_downward():
    g = import_graph()
    upward = sorted((a, b) for a, b in g.edges if _layer(b) > _layer(a))
    assert not upward, f"imports from a lower layer to a higher one: {upward}"


def test_nets_imports_nothing_above_it():
    g = import_graph()
    nets = [m for m in g if m == "zooscope.nets" or m.startswith("zooscope.nets.")]
    assert {f"zooscope.nets.{m}" for m in ("models", "arch", "datasets", "training")} <= set(nets)
    above = sorted((a, b) for a in nets for b in g.successors(a) if not (
        b.startswith("zooscope.nets") or b.split(".")[1].startswith("_")))
    assert not above, f"zooscope.nets must import only zooscope.nets and the private helpers: {above}"
    callers = {a.split(".")[1] for a, b in g.edges
               if b.startswith("zooscope.nets") and not a.startswith("zooscope.nets")}
    assert {"embed", "zoo", "cli"} <= callers  # the loaders every layer uses live here, not in zoo/


def test_the_layer_test_can_fail():
    assert _layer("zooscope.nets.models") < _layer("zooscope.embed.capture") < _layer("zooscope.zoo.zoo")
    assert _layer("zooscope._io") == _layer("zooscope._registry") == 0
    with pytest.raises(AssertionError, match=r"give zooscope\.newpkg a place"):
        _layer("zooscope.newpkg.mod")


def test_the_select_package_imports_only_forward():
    order = ["context", "scores", "distances", "fusion", "history", "budget", "candidates", "remote", "refine",
             "explain"]
    g = import_graph()
    rank = {f"zooscope.zoo.select.{m}": i for i, m in enumerate(order)} | {"zooscope.zoo.select": len(order)}
    assert set(rank) <= set(g), "the select package's modules moved: update this order"
    backward = [(a, b) for a, b in g.edges if a in rank and b in rank and rank[b] >= rank[a]]
    assert not backward, f"imports against select's order: {backward}"


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
    assert "zooscope.nets.training" not in reach
    assert {a for a, b in g.edges if b == "zooscope.nets.training" and a.startswith("zooscope.")} <= {
        "zooscope.zoo.select.refine", "zooscope.zoo.probes", "zooscope._demo_compare", "zooscope.demo"}


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


def test_a_registry_alias_finds_the_entry_and_cannot_shadow_a_name():
    from zooscope._registry import Registry

    reg = Registry("widget")
    reg.register("m", aliases=("hs",))(lambda: 1)  # registered under "<lambda>"
    reg.register("n", name="h_score", aliases=("hscore",))(lambda: 2)
    assert reg.get("hscore").name == "h_score" and reg.get("hscore")() == 2 and "hscore" in reg
    assert reg.available() == ["<lambda>", "h_score"]  # aliases are not extra names
    with pytest.raises(RuntimeError, match="registered twice"):
        reg.register("o", name="hscore")(lambda: 3)
    with pytest.raises(RuntimeError, match="registered twice"):
        reg.register("o", name="other", aliases=("h_score",))(lambda: 3)
