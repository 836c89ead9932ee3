"""The Python package's imports only go down: every module of python/s2sext imports (at module
level or inside a function) only modules of lower layers, so the import graph has no cycle.

LAYERS is the order, lowest first, that docs/architecture.md's Python section lists too."""

import ast
import itertools
import os
import re

import pytest

PACKAGE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python", "s2sext")

# Lowest first; a module may import only modules of earlier layers (modules of one layer do not
# import each other). "_core" is the compiled extension; "__init__" is the package itself.
LAYERS = [
    ["_core"],
    ["checks", "strict_json"],
    ["spec", "metrics"],
    ["ops", "padding", "tasks", "schedules", "distributed"],
    ["text"],
    ["config", "serialize"],
    ["layers", "seq2seq_file", "data"],
    ["decoding"],
    ["engine", "train", "plot", "demo"],
    ["model"],
    ["torch_equations", "torch_state_dict"],
    ["torch", "torch_reference", "opennmt", "cli_inputs"],
    ["cli_train"],
    ["cli"],
    ["__init__", "__main__"],
]

# Edges that break the order today, each with the change that removes it.
KNOWN_EXCEPTIONS = {}

LAYER_OF = {module: i for i, layer in enumerate(LAYERS) for module in layer}


def package_modules():
    return sorted(name[:-3] for name in os.listdir(PACKAGE_DIR) if name.endswith(".py"))


def imported_modules(module):
    """The package's modules that ``module`` imports anywhere in its source (``from . import x``,
    ``from .x import y``, ``import s2sext.x``, ``from s2sext import x``)."""
    with open(os.path.join(PACKAGE_DIR, module + ".py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    modules = set(package_modules()) | {"_core"}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 or (node.level == 0 and (node.module or "").split(".")[0] == "s2sext"):
                path = node.module if node.level == 1 else node.module.partition(".")[2]
                if path:
                    found.add(path.split(".")[0])
                else:  # from . import x, y: submodules, or names of the package itself
                    for alias in node.names:
                        found.add(alias.name if alias.name in modules else "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "s2sext":
                    found.add(parts[1] if len(parts) > 1 else "__init__")
    found.discard(module)
    return found


def import_graph():
    return {module: imported_modules(module) for module in package_modules()}


def test_every_module_has_a_layer():
    assert set(package_modules()) <= set(LAYER_OF), "add new modules to LAYERS (and docs/architecture.md)"
    assert set(LAYER_OF) - {"_core"} <= set(package_modules()), "LAYERS names a module that does not exist"


def test_imports_only_go_down():
    wrong = [f"{module} imports {target} (layer {LAYER_OF[module]} -> {LAYER_OF[target]})"
             for module, targets in import_graph().items() for target in sorted(targets)
             if LAYER_OF[target] >= LAYER_OF[module] and (module, target) not in KNOWN_EXCEPTIONS]
    assert not wrong, "\n".join(wrong)


def test_the_known_exceptions_still_exist():
    """An exception whose import is gone should be struck from KNOWN_EXCEPTIONS."""
    graph = import_graph()
    for module, target in KNOWN_EXCEPTIONS:
        assert target in graph[module], f"{module} no longer imports {target}: remove the exception"


def test_the_import_graph_has_no_cycle():
    graph = {module: {t for t in targets if (module, t) not in KNOWN_EXCEPTIONS}
             for module, targets in import_graph().items()}
    state = {}

    def visit(module, path):
        if state.get(module) == "done":
            return
        if state.get(module) == "open":
            pytest.fail("import cycle: " + " -> ".join(path[path.index(module):] + [module]))
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            visit(target, path + [module])
        state[module] = "done"

    for module in graph:
        visit(module, [])


def test_the_architecture_page_lists_the_modules():
    with open(os.path.join(os.path.dirname(PACKAGE_DIR), "..", "docs", "architecture.md"), encoding="utf-8") as f:
        page = f.read()
    lines = page[page.index("\npython/s2sext/") + 1:].splitlines()
    block = "\n".join(lines[:1] + [line for line in itertools.takewhile(lambda l: l.startswith(" "), lines[1:])])
    where = {m: re.search(rf"(?<![\w/]){m}\.py", block) for m in package_modules()}
    missing = [m for m, found in where.items() if not found]
    assert not missing, f"docs/architecture.md's python/s2sext block does not list {missing}"
    listed = sorted(where, key=lambda m: where[m].start())
    layers = [LAYER_OF[m] for m in listed]
    assert layers == sorted(layers), f"docs/architecture.md lists the modules out of layer order: {listed}"
