"""The package's import graph, read from its source with ``ast`` (nothing is imported): which module imports which,
at module level or inside a function, and which names it takes. ``tests/test_architecture.py`` holds the package
to it: no import cycles, no import of another module's private name, no function-local import except the ones
that keep the pytest plugin torch-free until a claim asks for a model (each listed with its reason)."""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported module, dotted
    names: tuple[str, ...]  # names taken from it ("*" for a plain import)
    local: bool  # inside a function
    line: int


def module_name(path: Path, root: Path = PACKAGE) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _resolve(mod: str, is_pkg: bool, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = mod.split(".")
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def imports(root: Path = PACKAGE) -> list[Import]:
    """Every import of a ``mechclaims`` module inside the package, module-level and function-local."""
    out: list[Import] = []
    for path in sorted(root.rglob("*.py")):
        mod, is_pkg = module_name(path, root), path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        local_nodes = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                       for n in ast.walk(f) if n is not f}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = _resolve(mod, is_pkg, node.level, node.module)
                names = tuple(a.name for a in node.names)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    out.append(Import(mod, a.name, ("*",), id(node) in local_nodes, node.lineno))
                continue
            else:
                continue
            out.append(Import(mod, target, names, id(node) in local_nodes, node.lineno))
    return out


def internal_graph(imps: list[Import], modules: set[str]) -> dict[str, set[str]]:
    """Module-level edges between package modules (``from pkg import submodule`` points at the submodule)."""
    g: dict[str, set[str]] = {m: set() for m in modules}
    for i in imps:
        if i.local or not i.target.startswith("mechclaims"):
            continue
        for n in i.names:
            t = f"{i.target}.{n}" if f"{i.target}.{n}" in modules else i.target
            if t in modules and t != i.module:
                g[i.module].add(t)
    return g


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out
