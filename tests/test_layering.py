"""Layering: the compiler loads without torch or transformers, and no module of the kit imports itself in a cycle.

The cycle check reads every module's module-level imports (``import x``, ``from x import y``, not those inside
functions, which run later) and fails on any cycle among the kit's modules; a second check imports every module of
``mapper`` in a fresh interpreter.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cimisa", "compiler", "perf", "mapper", "sw_model", "hw", "sim")
TORCH_FREE = ("compiler.place", "compiler.schedule", "compiler.cost", "compiler.program", "compiler.families",
              "compiler.chipmap", "compiler.components", "compiler.phases", "compiler.budget", "perf")

#: What each package may import at module level (docs/architecture.md, "Packages"): only packages above it.
ALLOWED = {
    "cimisa": {"cimisa"},
    "compiler": {"cimisa", "compiler"},
    "perf": {"cimisa", "compiler", "perf"},
    "sw_model": {"cimisa", "sw_model"},
    "hw": {"cimisa", "sw_model", "hw"},
    "mapper": {"cimisa", "compiler", "perf", "sw_model", "mapper"},
    "sim": {"cimisa", "compiler", "perf", "sw_model", "hw", "mapper", "sim"},
}


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            if any(p.startswith(".") or "sim_build" in p or p == "cocotb_tests" for p in parts):
                continue
            mods[".".join(parts)] = path
    return mods


def _top_level_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The kit modules ``name`` imports at module level (a ``from pkg import sub`` counts as ``pkg.sub`` when that
    is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()

    def visit(body):
        for node in body:
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                    pkg = pkg[:len(pkg) - node.level + 1]
                    base = ".".join([*pkg, base] if base else pkg)
                out.add(base)
                out.update(f"{base}.{a.name}" for a in node.names)
            elif isinstance(node, (ast.If, ast.Try)):
                if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                    continue
                visit(node.body)
                for h in getattr(node, "handlers", ()):
                    visit(h.body)
                visit(getattr(node, "orelse", ()))
    visit(tree.body)
    return {m for m in out if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _top_level_imports(name, path, set(mods)) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """Return one import cycle (``[a, b, ..., a]``) of ``graph``, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state:
                found = dfs(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = dfs(node)
            if found:
                return found
    return None


def test_cycle_check_can_fail():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_kit_modules():
    graph = import_graph()
    assert "mapper.models.build" in graph and "mapper.d2s.io" in graph["mapper.models.build"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Return every module-level import of a package that :data:`ALLOWED` does not allow."""
    return sorted(f"{m} imports {t}" for m, targets in graph.items() for t in targets
                  if t.split(".")[0] not in ALLOWED[m.split(".")[0]])


def test_layer_check_can_fail():
    assert layer_violations({"compiler.cost": {"perf.engine"}}) == ["compiler.cost imports perf.engine"]
    assert layer_violations({"perf.engine": {"compiler.cost"}}) == []


def test_packages_import_only_packages_above_them():
    graph = import_graph()
    assert not layer_violations(graph), layer_violations(graph)


def test_d2s_folder_format_does_not_import_models():
    graph = import_graph()
    assert not any(m.startswith("mapper.models") for m in graph["mapper.d2s.io"])
    assert not any(m.startswith("mapper.models") for m in graph["mapper.d2s.swap"])


def _fresh(code: str) -> str:
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def test_compiler_loads_without_torch_quickly():
    code = ("import sys, time; t = time.perf_counter()\n"
            f"import {', '.join(TORCH_FREE)}\n"
            "import json; print(json.dumps({'s': time.perf_counter() - t, "
            "'torch': 'torch' in sys.modules, 'tf': 'transformers' in sys.modules}))")
    times = []
    for _ in range(3):      # the best of three: the machine may be busy
        got = json.loads(_fresh(code).strip().splitlines()[-1])
        assert not got["torch"] and not got["tf"], got
        times.append(got["s"])
    assert min(times) < 1.0, times


@pytest.mark.slow
def test_every_mapper_module_imports_in_a_fresh_interpreter():
    names = sorted(n for n in _modules() if n.split(".")[0] == "mapper" and not n.endswith("__main__"))
    code = ("import importlib, sys\nbad = []\n"
            f"for n in {names!r}:\n"
            "    try:\n        importlib.import_module(n)\n"
            "    except Exception as exc:\n        bad.append(f'{n}: {type(exc).__name__}: {exc}')\n"
            "print('\\n'.join(bad)); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr[-2000:]


def test_each_mapper_model_and_evaluate_module_imports_alone():
    """Each module, imported first (no kit module loaded before it), loads: an import cycle shows as an
    ImportError. One interpreter: torch and transformers stay loaded, every kit module is dropped between
    imports (a fresh interpreter per module cost ~35 s for the same check)."""
    names = sorted(n for n in _modules() if n.startswith(("mapper.models", "mapper.d2s", "mapper.evaluate",
                                                         "compiler.families", "compiler.cost")))
    code = ("import sys, traceback\nimport torch, transformers\nbad = []\n"
            f"kit = {PACKAGES!r}\n"
            f"for n in {names!r}:\n"
            "    for m in [m for m in sys.modules if m.split('.')[0] in kit]:\n"
            "        del sys.modules[m]\n"
            "    try:\n        __import__(n)\n"
            "    except Exception as exc:\n        bad.append(f'{n}: {type(exc).__name__}: {exc}')\n"
            "print('\\n'.join(bad)); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr[-2000:]
