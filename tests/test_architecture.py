"""The rules that keep the code small (ARCHITECTURE.md), enforced."""

from __future__ import annotations

import ast
from pathlib import Path

from .conftest import REPO

ALLOWED_IN_BACKENDS = {"snnc.compiler.ir", "snnc.compiler.hw", "snnc.backends.base", "snnc.runtime.raster", "snnc"}


def snnc_imports(path: Path) -> set[str]:
    """Absolute names of the snnc modules ``path`` imports (relative imports resolved within backends/)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            package = "snnc.backends" if path.parent.name == "backends" else f"snnc.backends.{path.parent.name}"
            base = f"{package}.{node.module}" if node.module else package
            found.update(f"{base}.{alias.name}" if not node.module else base for alias in node.names)
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("snnc"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("snnc"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in ALLOWED_IN_BACKENDS or node.module == "snnc" else node.module)
    return found


def test_backends_import_only_ir_hw_base_and_raster():
    for path in (REPO / "backends").rglob("*.py"):
        # a backend is backends/<name>.py with helpers backends/<name>_*.py, or a package backends/<name>/
        parts = path.relative_to(REPO / "backends").with_suffix("").parts
        backend = parts[0].split("_")[0] if len(parts) == 1 else parts[0]
        for name in snnc_imports(path):
            if name == "snnc.__version__":
                continue
            own = name.removeprefix("snnc.backends.").split(".")[0]
            if name.startswith("snnc.backends.") and (own == backend or own.startswith(backend + "_")):
                continue
            assert name in ALLOWED_IN_BACKENDS, f"{path.relative_to(REPO)} imports {name}"


def test_every_pass_exposes_exactly_one_public_run():
    for path in (REPO / "compiler" / "passes").glob("*.py"):
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text())
        public_functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]
        assert public_functions == ["run"], f"{path.name}: public functions {public_functions}"


def test_pipeline_lists_every_pass_file():
    pipeline = (REPO / "compiler" / "pipeline.py").read_text()
    for path in (REPO / "compiler" / "passes").glob("*.py"):
        if path.name != "__init__.py":
            assert f"{path.stem}.run" in pipeline, f"pass {path.stem} is not in compiler/pipeline.py"
