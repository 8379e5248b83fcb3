"""The package's import graph, read from the source (module-level and in-function imports alike):
no module imports itself back through others, and each layer imports only the layers below it."""

import ast

import pytest
from helpers import ROOT

PACKAGE = ROOT / "src" / "blockswap"


def module_names() -> dict[str, tuple]:
    """Every module of the package by dotted name: (its file, whether it is a package's __init__)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def resolve(name: str, modules: dict) -> str:
    """The module `name` lives in: itself, or the nearest package above it (an imported function's)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def imported(name: str, path, is_package: bool, modules: dict) -> set[str]:
    """The package's modules that module `name` imports, anywhere in its file."""
    here = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {resolve(alias.name, modules) for alias in node.names if alias.name.split(".")[0] == "blockswap"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = here.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != "blockswap":
                continue
            for alias in node.names:  # `from . import x` imports the module x, `from .m import f` the module m
                full = f"{base}.{alias.name}"
                found.add(full if full in modules else resolve(base, modules))
    return found - {name, ""}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imported(name, path, is_package, modules) for name, (path, is_package) in modules.items()}


def package_of(module: str) -> str:
    """blockswap.search.proxies.base -> search; the top-level modules are their own packages."""
    return module.split(".")[1] if "." in module else ""


def edges_between(graph, importer: str, imported_package: str) -> list[str]:
    return sorted(
        f"{m} -> {t}"
        for m, targets in graph.items()
        if package_of(m) == importer
        for t in targets
        if package_of(t) == imported_package
    )


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules in order, the first repeated at the end), or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once every path from it is explored
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def test_the_graph_sees_in_function_imports(graph):
    # cli.reporting imports the figures (matplotlib) only inside the command that draws them.
    assert "blockswap.reporting.figures" in graph["blockswap.cli.reporting"]
    assert "blockswap.search.fisher" in graph["blockswap.search.measure"]


def test_finding_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_module_imports_itself_back(graph):
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_deploy_never_imports_reporting(graph):
    # The statistics both use are blockswap.stats; the students table's latency column is deploy's.
    assert not edges_between(graph, "deploy", "reporting")


def test_training_never_imports_search(graph):
    # Nothing of search is needed by training: SNIP, the pruning baseline it trains, is training's own.
    assert not edges_between(graph, "training", "search")


def test_networks_import_neither_training_nor_search(graph):
    assert not edges_between(graph, "networks", "training") + edges_between(graph, "networks", "search")


def test_stats_is_the_bottom_layer(graph):
    outside = sorted(
        f"{m} -> {t}"
        for m, targets in graph.items()
        if package_of(m) == "stats"
        for t in targets
        if package_of(t) != "stats"
    )
    assert not outside, outside  # in particular neither deploy nor reporting
