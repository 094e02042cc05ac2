"""jsr's modules import each other one way: the import graph, read from the source with ast
(imports inside functions included), has no cycle, and no jsr module is imported inside a
function (the old way to hide a cycle)."""

import ast
import os
from pathlib import Path
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[1] / "jsr"


def _module_name(path: Path) -> str:
  parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}


def _resolve(name: str) -> str | None:
  """The jsr module an imported name lives in (the longest existing prefix), or None."""
  parts = name.split(".")
  for i in range(len(parts), 0, -1):
    candidate = ".".join(parts[:i])
    if candidate in MODULES:
      return candidate
  return None


def _imports(module: str) -> list[tuple[str, int, bool]]:
  """(imported jsr module, line, inside a function) for every import statement of `module`."""
  path = MODULES[module]
  tree = ast.parse(path.read_text(), str(path))
  package = module if path.name == "__init__.py" else module.rpartition(".")[0]
  found = []

  def visit(node, in_function):
    for child in ast.iter_child_nodes(node):
      inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                ast.Lambda))
      names = []
      if isinstance(child, ast.Import):
        names = [a.name for a in child.names]
      elif isinstance(child, ast.ImportFrom):
        base = child.module or ""
        if child.level:
          anchor = package.split(".")
          anchor = anchor[:len(anchor) - (child.level - 1)]
          base = ".".join(anchor + ([base] if base else []))
        # `from jsr import io` imports the module jsr.io; `from jsr.io import f` imports jsr.io.
        names = [f"{base}.{a.name}" for a in child.names] + [base]
      for name in names:
        target = _resolve(name)
        if target and target != module:
          found.append((target, child.lineno, in_function))
      visit(child, inner)

  visit(tree, False)
  return found


def _graph() -> dict[str, set[str]]:
  graph = {m: set() for m in MODULES}
  for m in MODULES:
    # (A package's __init__ runs before its submodules; `from jsr import io` names the package
    # too, so those edges are the explicit ones.)
    graph[m] |= {t for t, _, _ in _imports(m)}
  return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One cycle as [a, b, ..., a], or None (iterative DFS with colours)."""
  colour, parent = {}, {}
  for start in sorted(graph):
    if start in colour:
      continue
    stack = [(start, iter(sorted(graph[start])))]
    colour[start] = "grey"
    while stack:
      node, it = stack[-1]
      nxt = next(it, None)
      if nxt is None:
        colour[node] = "black"
        stack.pop()
      elif colour.get(nxt) == "grey":
        cycle = [nxt]
        for n, _ in reversed(stack):
          cycle.append(n)
          if n == nxt:
            break
        return cycle[::-1]
      elif nxt not in colour:
        colour[nxt], parent[nxt] = "grey", node
        stack.append((nxt, iter(sorted(graph[nxt]))))
  return None


def test_find_cycle_finds_one():
  # The checker itself: a planted cycle is reported, a DAG is not.
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) is not None
  assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_reads_function_level_imports(tmp_path):
  assert ("jsr.train", 0) in {(t, 0) for t, _, inner in _imports("jsr.main") if not inner}
  assert len(MODULES) > 30


def test_jsr_imports_form_a_dag():
  cycle = find_cycle(_graph())
  assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_jsr_module_is_imported_inside_a_function():
  inner = [f"{m} line {line}: {t}" for m in sorted(MODULES) for t, line, f in _imports(m) if f]
  assert not inner, "imports of jsr modules inside functions:\n" + "\n".join(inner)


@pytest.mark.parametrize("edge", [("jsr.inference", "jsr.train"), ("jsr.zeroshot", "jsr.train"),
                                  ("jsr.evaluate", "jsr.train")])
def test_helpers_do_not_import_the_training_loop(edge):
  # Only jsr.main imports the training loop (DESIGN.md); the helpers live in their own modules.
  graph = _graph()
  reach, todo = set(), [edge[0]]
  while todo:
    n = todo.pop()
    for t in graph[n] - reach:
      reach.add(t)
      todo.append(t)
  assert edge[1] not in reach


def test_importing_jsr_does_not_start_the_xla_backend():
  # jax.distributed.initialize() must run before the backend starts (jsr/main.py imports the
  # engine first): a jnp array made at import time anywhere in jsr would break multi-host runs.
  code = (
      "import importlib, sys\n"
      "from jax._src import xla_bridge\n"
      "def fail(*a, **k):\n"
      "  raise SystemExit('the XLA backend was started at import')\n"
      "xla_bridge.backends = fail\n"
      f"for name in {sorted(m for m in MODULES if m != 'jsr.__main__')!r}:\n"
      "  importlib.import_module(name)\n"
      "print('ok')\n")
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT.parent, capture_output=True,
                        text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
