"""The layers the packages' docstrings claim: serve-time routing (``app.routing``: what a replica loads) imports
nothing from calibration, feedback or the Ray Serve graph, and no Ray; calibration and feedback never import
the serve graph; feedback does not import calibration.

Every ``import`` of every module is read with ``ast`` (also those inside functions), and followed through the
``app`` modules it reaches, so an indirect import through a helper counts too.
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app"

RULES = {  # package -> what none of its modules may import, directly or through other app modules
    "app.routing": ("app.calibration", "app.feedback", "app.serve", "ray"),
    "app.calibration": ("app.serve", "ray"),
    "app.feedback": ("app.serve", "app.calibration", "ray"),
    "app.verification": ("app.calibration", "app.feedback", "app.serve", "ray"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module an import statement in ``source`` names, relative imports resolved against ``module``
    (``from app import serve`` names ``app.serve``: a name after ``from X import`` may be a module)."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return out


def source_of(name: str) -> Path | None:
    """The file of app module ``name`` (or of the module holding attribute ``name``); None outside app."""
    parts = name.split(".")
    while parts and parts[0] == "app":
        path = ROOT.joinpath(*parts)
        for candidate in (path.with_suffix(".py"), path / "__init__.py"):
            if candidate.is_file():
                return candidate
        parts = parts[:-1]
    return None


def reached(path: Path) -> dict[str, list[str]]:
    """Every module imported from ``path`` or from the app modules it imports, with the chain that imports it."""
    chains: dict[str, list[str]] = {}
    todo = [(path, [module_name(path)])]
    seen = {path}
    while todo:
        file, chain = todo.pop()
        for name in sorted(imports(file.read_text(encoding="utf-8"), module_name(file), file.name == "__init__.py")):
            chains.setdefault(name, chain + [name])
            nxt = source_of(name)
            if nxt is not None and nxt not in seen:
                seen.add(nxt)
                todo.append((nxt, chain + [module_name(nxt)]))
    return chains


def forbidden(name: str, banned: tuple[str, ...]) -> bool:
    return any(name == b or name.startswith(b + ".") for b in banned)


def violations(path: Path, banned: tuple[str, ...]) -> list[str]:
    return [" -> ".join(chain) for name, chain in sorted(reached(path).items()) if forbidden(name, banned)]


def modules_of(package: str) -> list[Path]:
    return sorted(ROOT.joinpath(*package.split(".")).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(RULES))
def test_packages_import_only_what_their_layer_allows(package):
    files = modules_of(package)
    assert len(files) >= 5, files  # the package is where this test thinks it is
    bad = [v for f in files for v in violations(f, RULES[package])]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_every_form_of_import(tmp_path):
    """What the test above would catch, were someone to add it to a module of app.routing."""
    module = "app.routing.router"
    for line in (
        "from app.serve.config import AppConfig",
        "import ray",
        "import ray.serve as serve",
        "from ray import serve",
        "from app import calibration",
        "from app.feedback.label import row_id",
        "from ..serve import config",
        "from .. import serve",
        "def f():\n    from app.calibration.data import load",
    ):
        names = imports(line, module)
        assert any(forbidden(n, RULES["app.routing"]) for n in names), line
    assert not any(forbidden(n, RULES["app.routing"]) for n in imports("from app.routing.text import Messages\nimport numpy", module))
    assert imports("from . import text", "app.routing", is_package=True) == {"app.routing", "app.routing.text"}
    # followed through app modules: a helper that imports the serve graph taints its importer
    assert any(c[-1].startswith("app.serve") for c in reached(APP / "serve" / "shadow.py").values())
    assert source_of("app.routing.text.Messages") == APP / "routing" / "text.py"


def test_a_replica_loading_serve_time_routing_loads_no_ray_and_nothing_offline():
    """At run time too: importing every module of app.routing leaves Ray and the other packages unloaded."""
    names = [module_name(f) for f in modules_of("app.routing")]
    code = (
        "import importlib, sys\n"
        f"for n in {names!r}: importlib.import_module(n)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ray' or m.startswith(('app.calibration', 'app.feedback', 'app.serve'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


MAX_MODULE_LINES, MAX_FUNCTION_LINES = 350, 80


def oversized(root: Path) -> list[str]:
    """Modules over MAX_MODULE_LINES lines and functions over MAX_FUNCTION_LINES lines under ``root``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        if (n := len(source.splitlines())) > MAX_MODULE_LINES:
            found.append(f"{path.relative_to(ROOT)}: {n} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if (n := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {n} lines")
    return found


@pytest.mark.parametrize("folder", ["app", "scripts"])
def test_modules_and_functions_stay_small(folder):
    """One concept per module: none over 350 lines, no function over 80 (split it instead of growing it)."""
    assert oversized(ROOT / folder) == []


def test_oversized_finds_a_long_function(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "m.py").write_text(f"def long():\n{body}\n\n\ndef short():\n    return 1\n")
    assert oversized(tmp_path) == [f"m.py:1 long: {MAX_FUNCTION_LINES + 1} lines"]
