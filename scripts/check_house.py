"""House rules anyone can check: no module over 400 lines, no function over 80, no import cycle in dvp_hub.

    python scripts/check_house.py            # prints each breach, exits 1 when there is one

Imports inside functions count for cycles too: a lazy import hides a dependency, it does not remove it.
An import inside a function needs `# lazy: why` on its line (start-up time, an optional dependency, a test patch).
Written by hand because it is a few lines of `ast`; import-linter would need a contract file for the same.
"""

from __future__ import annotations

import ast
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKED = ("dvp_hub", "training", "spaces", "scripts", "benchmarks")
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 80


def python_files():
    for top in CHECKED:
        for root, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for f in sorted(files):
                if f.endswith(".py"):
                    yield os.path.join(root, f)


def module_name(path: str) -> str:
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def imported(tree: ast.AST, name: str, is_package: bool) -> set[str]:
    """dvp_hub modules that a module imports anywhere in its body (resolved relative imports)."""
    out = set()
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("dvp_hub"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if base.startswith("dvp_hub"):
                out.add(base)
                out.update(f"{base}.{a.name}" for a in node.names)
    return out


def unexplained_lazy_imports(tree: ast.AST, lines: list[str]) -> list[int]:
    """Lines of the imports inside functions whose line carries no ``# lazy`` comment."""
    out = []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and "# lazy" not in lines[node.lineno - 1]:
                    out.append(node.lineno)
    return sorted(set(out))


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def breaches() -> list[str]:
    out, graph = [], {}
    for path in python_files():
        rel = os.path.relpath(path, ROOT)
        text = open(path, encoding="utf-8").read()
        lines = text.count("\n")
        if lines > MAX_MODULE_LINES:
            out.append(f"{rel}: {lines} lines (at most {MAX_MODULE_LINES})")
        tree = ast.parse(text, rel)
        for line in unexplained_lazy_imports(tree, text.splitlines()):
            out.append(f"{rel}:{line}: import inside a function without a '# lazy: why' comment")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    out.append(f"{rel}:{node.lineno}: {node.name} has {n} lines (at most {MAX_FUNCTION_LINES})")
        name = module_name(path)
        if name.startswith("dvp_hub"):
            graph[name] = imported(tree, name, path.endswith("__init__.py"))
    # an import of a package imports its __init__; a name imported from a module is not a module: keep modules only
    graph = {k: {m for m in v if m in graph and m != k and not k.startswith(m + ".")} for k, v in graph.items()}
    cycle = find_cycle(graph)
    if cycle:
        out.append("import cycle: " + " -> ".join(cycle))
    return out


def main() -> int:
    found = breaches()
    for line in found:
        print(line)
    print(f"{len(found)} breach(es) of the house rules" if found else "house rules kept")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
