"""The package's floors: a module imports only from its own floor or below, and no import cycle exists (imports
inside functions included, so none can dodge a cycle). README.md, "Layout", lists the floors."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOORS = {"config": 1, "vocab": 1, "patching": 1, "loss": 1,
          "model": 2, "data": 2, "flops": 2, "lst_kernels": 2,
          "evaluation": 3, "corpora": 3, "runs": 3, "export": 3,
          "trainer": 4, "generation": 4,
          "sweeps": 5, "demo": 5,
          "cli": 6, "__main__": 6}


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for lst_train and lst_kernels."""
    found = {}
    for package, folder in (("lst_train", ROOT / "src" / "lst_train"), ("lst_kernels", ROOT / "kernels")):
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            found[".".join((package, *parts))] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Our modules that `path` imports anywhere in it: `from a.b import c` depends on a.b.c when that is a module,
    else on a.b; a name not ours is left out."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                      for alias in node.names}
    return {name for name in names if name in modules}


def _floor(module: str) -> int:
    if module.startswith("lst_kernels"):
        return FLOORS["lst_kernels"]
    parts = module.split(".")
    if len(parts) == 1:
        return 0  # the package's __init__: only its version, imports nothing
    return FLOORS[parts[1]]


MODULES = _modules()
GRAPH = {module: _imports(path, MODULES) - {module} for module, path in MODULES.items()}


def test_every_module_has_a_floor():
    unknown = sorted(m for m in MODULES if m.startswith("lst_train.") and m.split(".")[1] not in FLOORS)
    assert not unknown, f"give these a floor in FLOORS and README.md: {unknown}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_upward_import(module):
    upward = sorted(t for t in GRAPH[module] if _floor(t) > _floor(module)
                    and not (t == "lst_train" or module.startswith(t + ".")))
    assert not upward, f"{module} (floor {_floor(module)}) imports from above: " + \
        ", ".join(f"{t} (floor {_floor(t)})" for t in upward)
    if module.startswith("lst_kernels"):
        assert not any(t.startswith("lst_train") for t in GRAPH[module]), "lst_kernels is a leaf"


def test_no_import_cycle():
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = "open"
        stack.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(target):] + [target]))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)
