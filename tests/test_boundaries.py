"""The layout's rules, read from the import statements of every module:

- no task imports another task;
- nothing outside lightning_compress/tasks/ imports a task (the registry finds them with
  one lazy `importlib.import_module("lightning_compress.tasks")` in task.py);
- data modules import no task.
"""

import ast
from pathlib import Path

import pytest

from helpers import REPO

PACKAGE = REPO / "lightning_compress"
TASKS = PACKAGE / "tasks"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path = REPO) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, relative ones resolved;
    `from x import y` counts as x.y too, since y may be a module."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def _task_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] == ["lightning_compress", "tasks"]:
        return parts[2] if len(parts) > 2 else "*"
    return None


def violations(root: Path = REPO) -> list[str]:
    found = []
    files = sorted((root / "lightning_compress").rglob("*.py")) + sorted((root / "data_modules").rglob("*.py"))
    for path in files:
        rel = path.relative_to(root)
        own = rel.parts[2] if rel.parts[:2] == ("lightning_compress", "tasks") and len(rel.parts) > 3 else None
        for line, module in imported_modules(path, root):
            target = _task_of(module)
            if target is None:
                continue
            if own is not None and target not in (own, "*"):
                found.append(f"{rel}:{line}: task {own!r} imports task {target!r}")
            elif own is None and rel.parts[0] == "data_modules":
                found.append(f"{rel}:{line}: a data module imports task {target!r}")
            elif own is None and rel != Path("lightning_compress/tasks/__init__.py") and not (
                rel == Path("lightning_compress/task.py") and module == "lightning_compress.tasks"
            ):
                found.append(f"{rel}:{line}: the core imports task {target!r}")
    return list(dict.fromkeys(found))  # `from x import y` is seen as x and as x.y: report it once


def test_no_import_crosses_a_task_boundary():
    assert violations() == []


def test_the_check_sees_relative_and_lazy_imports(tmp_path):
    # The rule must catch the forms a real violation would take.
    (tmp_path / "lightning_compress" / "tasks" / "bytes").mkdir(parents=True)
    (tmp_path / "data_modules").mkdir()
    (tmp_path / "lightning_compress" / "runner.py").write_text("def f():\n    from .tasks.prompt import module\n")
    (tmp_path / "lightning_compress" / "tasks" / "bytes" / "model.py").write_text(
        "from ..prompt.memory import MemoryKV\nimport importlib\nimportlib.import_module('lightning_compress.tasks.prompt')\n"
    )
    (tmp_path / "data_modules" / "reader.py").write_text("from lightning_compress.tasks.bytes import api\n")
    found = violations(tmp_path)
    assert len(found) == 4, found
    assert any("runner.py:2: the core imports task 'prompt'" in v for v in found)
    assert sum("task 'bytes' imports task 'prompt'" in v for v in found) == 2
    assert any("reader.py:1: a data module imports task 'bytes'" in v for v in found)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")) + sorted((REPO / "data_modules").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_no_source_file_over_400_lines(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 400
