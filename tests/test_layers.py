"""Structure rules. The import graph follows the layers of DEVELOPERS.md, read from the source (every import, also
inside functions and ``TYPE_CHECKING`` blocks):

    core (+ the adapter registry) <- kernels <- plugins (caching, sampling, sparse_attention, reparam)
      <- metrics <- tuning, evaluation <- app, cli
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "accel"

CORE = {
    "api",
    "session",
    "context",
    "plugin",
    "compat",
    "config",
    "summary",
    "errors",
    "tensors",
    "compiling",
    "fingerprint",
    "plan",
    "files",
    "devices",
    "facts",
    "ownership",
    "loop_binding",
    "parallel",
}
PLUGINS = {"caching", "sampling", "sparse_attention", "reparam"}

#: What each group may import besides itself.
ALLOWED = {
    "core": {"registry"},
    "registry": {"core"},
    "models": {"core", "registry"},
    "kernels": {"core"},
    **{plugin: {"core", "registry", "kernels"} for plugin in PLUGINS},
    "metrics": {"core", "registry", "models", "kernels", *PLUGINS},
    "evaluation": {"core", "registry", "models", "kernels", "metrics", *PLUGINS},
    "tuning": {"core", "registry", "models", "kernels", "metrics", "evaluation", *PLUGINS},
    "app": {"core", "registry", "models", "kernels", "metrics", "evaluation", "tuning", *PLUGINS},
    "cli": {"core", "registry", "models", "kernels", "metrics", "evaluation", "tuning", "app", *PLUGINS},
}


def group_of(module: str) -> str | None:
    """The layer group of a module of accel, or None for the package root (the public facade)."""
    parts = module.split(".")[1:]
    if not parts:
        return None
    head = parts[0]
    if head in CORE:
        return "core"
    if head == "pipelines":
        return "registry" if len(parts) > 1 and parts[1] in ("registry", "adapters", "discovery") else "models"
    return head


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def accel_imports(path: Path) -> set[str]:
    """Absolute names of the accel modules ``path`` imports (``from x import y`` may name module y)."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(
                f"{target}.{alias.name}"
                for alias in node.names
                if (ROOT.parent / f"{target}.{alias.name}".replace(".", "/")).exists()
                or (ROOT.parent / (f"{target}.{alias.name}".replace(".", "/") + ".py")).exists()
            )
    return {name for name in found if name == "accel" or name.startswith("accel.")}


def violations() -> list[str]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        module = module_name(path)
        group = group_of(module)
        if group is None:
            continue
        for imported in sorted(accel_imports(path)):
            target = group_of(imported)
            if target is None or target == group or target in ALLOWED[group]:
                continue
            out.append(f"{module} ({group}) imports {imported} ({target})")
    return out


def test_import_graph_follows_the_layers():
    assert violations() == []


def test_layer_checker_sees_a_violation(tmp_path, monkeypatch):
    # the checker itself must be able to fail: a kernel that imports a plugin, written in a temporary tree
    fake_root = tmp_path / "accel"
    (fake_root / "kernels").mkdir(parents=True)
    (fake_root / "sparse_attention").mkdir()
    (fake_root / "caching").mkdir()
    (fake_root / "caching" / "deepcache.py").write_text("from ..errors import ConfigError\n")
    (fake_root / "kernels" / "bad.py").write_text("def f():\n    from ..sparse_attention import plugin\n")
    (fake_root / "sparse_attention" / "plugin.py").write_text("from ..caching import deepcache\n")
    monkeypatch.setitem(globals(), "ROOT", fake_root)
    assert violations() == [
        "accel.kernels.bad (kernels) imports accel.sparse_attention (sparse_attention)",
        "accel.kernels.bad (kernels) imports accel.sparse_attention.plugin (sparse_attention)",
        "accel.sparse_attention.plugin (sparse_attention) imports accel.caching (caching)",
        "accel.sparse_attention.plugin (sparse_attention) imports accel.caching.deepcache (caching)",
    ]


#: Modules that may raise Python's own exceptions: developer tools, not reached from the library API.
BUILTIN_ERRORS_ALLOWED = {"accel/app/screenshot.py"}


def test_errors_a_user_can_trigger_are_accels_typed_errors():
    """Every ``raise`` of a bare ValueError/TypeError/RuntimeError/FileNotFoundError/KeyError in accel is
    one of accel's errors instead (they subclass those, so ``except ValueError`` still works)."""
    import re

    pattern = re.compile(r"raise (ValueError|TypeError|RuntimeError|FileNotFoundError|KeyError)\(")
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = str(path.relative_to(ROOT.parent))
        if rel in BUILTIN_ERRORS_ALLOWED:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                found.append(f"{rel}:{number}: {line.strip()}")
    assert found == []


def test_importing_the_adapter_registry_loads_no_builtin_model():
    import subprocess
    import sys

    code = (
        "import sys, accel.pipelines.registry, accel.pipelines\n"
        "print(sorted(m for m in sys.modules if m.startswith(('accel.pipelines.builtin', 'accel.pipelines.loading'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
