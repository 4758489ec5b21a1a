"Texts that must not go stale: module docstrings, the methods file the notebooks cite."
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(p for p in (ROOT / "knife_repro").rglob("*.py") if p.name not in ("_modidx.py",)
                 and p != ROOT / "knife_repro" / "__init__.py")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_docstring_is_a_complete_sentence(path):
    "nbdev takes a module's docstring from the first `>` line of its notebook's title cell: it must end a sentence."
    doc = ast.get_docstring(ast.parse(path.read_text()))
    assert doc and doc.rstrip()[-1] in ".?!", f"{path.name}: docstring {doc!r} stops mid-sentence"
