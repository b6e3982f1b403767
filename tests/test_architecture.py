"""The dependency rules of DESIGN.md, checked on the source: no import cycle, the layers of the
core import only downwards (cli → commands → run → reporting → config → provisioners.api →
config.model → system), kinds reach the core only through its lower layers, no module of the
core names a kind, and the commands that only read matrix.yaml load no cloud SDK, jubilant or
lightkube (measured in a subprocess)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "provisioners", "deployments")
HEAVY = ("jubilant", "lightkube", "boto3", "botocore", "azure", "google", "moto")
# The core's layers, lowest first; a module belongs to the longest prefix it has here.
LAYERS = ("harness.system", "harness.config.defects", "harness.config.model", "provisioners.api",
          "harness.config", "harness.reporting", "harness.run", "harness.incell",
          "harness.commands", "harness.cli")
# What a kind (provisioners.*, deployments.*) may import of the core: the layers up to the API.
KIND_MAY_IMPORT = LAYERS[:4]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def import_graph() -> dict[str, set[str]]:
    """module → the project modules it imports at run time (lazy imports included,
    `if TYPE_CHECKING:` imports excluded: they never run)."""
    files = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_lines(tree)
        deps: set[str] = set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    deps.add(target)
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                found.append([*stack[stack.index(dep):], dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def _is_package_init(graph: dict[str, set[str]], module: str) -> bool:
    return any(other.startswith(module + ".") for other in graph)


def test_no_import_cycle():
    graph = import_graph()
    # a package's own submodules importing the package (not its __init__ code) are no cycle
    cycles = [c for c in _cycles(graph)
              if not any(_is_package_init(graph, m) for m in c[:-1])]
    assert cycles == [], "import cycles:\n" + "\n".join(" → ".join(c) for c in cycles)


def test_the_dependency_direction_of_the_design():
    graph = import_graph()
    problems = []
    for module, deps in sorted(graph.items()):
        for dep in sorted(deps):
            if dep == "harness.cli" and module != "harness.__main__":
                problems.append(f"{module} imports harness.cli (nothing may)")
            if module.startswith("provisioners") and dep.startswith("scenarios"):
                problems.append(f"{module} imports {dep} (provisioners never import scenarios)")
            if module.startswith("deployments") and dep.startswith("provisioners.") \
                    and dep != "provisioners.api":
                problems.append(f"{module} imports {dep} (deployments sit below provisioners)")
            if module.startswith("harness.") and dep.startswith(("provisioners.", "deployments")) \
                    and dep != "provisioners.api":
                problems.append(f"{module} imports {dep} (the core reaches kinds through "
                                "harness.config.registry only)")
    assert problems == []


def _layer(module: str) -> int | None:
    found = [i for i, prefix in enumerate(LAYERS)
             if module == prefix or module.startswith(prefix + ".")]
    return max(found, key=lambda i: len(LAYERS[i])) if found else None


def test_layers_import_only_downwards():
    problems = []
    for module, deps in sorted(import_graph().items()):
        mine = _layer(module)
        is_kind = module.startswith(("provisioners.", "deployments")) and mine is None
        for dep in sorted(deps):
            theirs = _layer(dep)
            if theirs is None:
                continue
            if is_kind and LAYERS[theirs] not in KIND_MAY_IMPORT:
                problems.append(f"{module} → {dep}: a kind uses only "
                                f"{', '.join(KIND_MAY_IMPORT)}")
            elif mine is not None and theirs > mine:
                problems.append(f"{module} → {dep}: {LAYERS[mine]} is below {LAYERS[theirs]}")
    assert problems == []


def test_the_core_names_no_kind():
    """A kind declares what the core needs (`Provisioner.traits`); the core never asks by name.
    The Allure executor type "local" (a machine, not a kind) is the one such string allowed."""
    from importlib.metadata import entry_points

    kinds = {ep.name for ep in entry_points(group="mlflow_matrix.provisioners")}
    allowed = {("harness/reporting/enrich.py", "local")}
    found = []
    for path in sorted((ROOT / "harness").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in kinds \
                    and (rel, node.value) not in allowed:
                found.append(f"{rel}:{node.lineno} {node.value!r}")
    assert found == []


def test_matrix_imports_no_provisioner():
    graph = import_graph()
    seen, todo = set(), ["harness.config.matrix"]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph.get(module, ()))
    assert not [m for m in seen if m.startswith(("provisioners", "deployments"))], sorted(seen)


def test_scenarios_import_only_the_plugin_and_their_helpers():
    problems = []
    for path in sorted((ROOT / "scenarios").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom)
                     and node.level == 0 else [])
            for name in names:
                top = name.split(".")[0]
                if top in PACKAGES and not name.startswith(("harness.incell.plugin",
                                                            "harness.system.endpoint")):
                    problems.append(f"{path.name}: {name}")
    assert problems == []


PROBE = """
import contextlib, io, json, sys
import harness.cli
after_import = sorted(m for m in sys.modules if m.split('.')[0] in {heavy})
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        code = harness.cli.main({argv})
    except SystemExit as exc:
        code = exc.code
print(json.dumps([code, after_import,
                  sorted(m for m in sys.modules if m.split('.')[0] in {heavy})]))
"""


@pytest.mark.parametrize(("argv", "expected"), [
    (["list"], 0), (["list", "--json"], 0), (["plan", "--platform", "local"], 0),
    (["--help"], 0), (["run", "--help"], 0),
    (["run", "--platform", "no-such-platform"], 2), (["plan", "--channel", "9.9/none"], 2)])
def test_reading_the_matrix_loads_no_cloud_sdk_jubilant_or_lightkube(argv, expected):
    code = PROBE.format(heavy=set(HEAVY), argv=argv)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    exit_code, after_import, after_command = json.loads(proc.stdout.strip().splitlines()[-1])
    assert exit_code == expected
    assert after_import == [], "import harness.cli loaded " + ", ".join(after_import)
    assert after_command == [], f"mlflow-matrix {' '.join(argv)} loaded " + ", ".join(after_command)
