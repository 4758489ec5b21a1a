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


def _methods_sections() -> set[str]:
    "Section numbers of reference/methods.md: its headings, and `N.n` for item n of a numbered list under section N."
    secs, cur = set(), None
    for line in (ROOT / "reference" / "methods.md").read_text().splitlines():
        if m := re.match(r"#+ (\d+(?:\.\d+)*)[. ]", line):
            cur = m.group(1); secs.add(cur)
        elif cur and (m := re.match(r"(\d+)\. ", line)):
            secs.add(f"{cur}.{m.group(1)}")
    return secs


def _cited_sections():
    "(file, section) for every `§N` in the notebooks, the modules, the sweeps and the reference files."
    files = [*(ROOT / "nbs").glob("*.ipynb"), *(ROOT / "knife_repro").rglob("*.py"), *(ROOT / "sweeps").glob("*.yaml"),
             ROOT / "README.md", ROOT / "reference" / "README.md", ROOT / "reference" / "paper_numbers.csv"]
    for f in files:
        for m in re.finditer(r"§\s?(\d+(?:\.\d+)*)", f.read_text()):
            yield f.relative_to(ROOT), m.group(1).rstrip(".")


def test_every_methods_citation_resolves_in_the_repository():
    secs = _methods_sections()
    assert {"0", "1.2", "1.5", "1.6", "2.11.3", "2.11.8", "4.5.2"} <= secs      # the parser finds what it must
    bad = sorted({(str(f), s) for f, s in _cited_sections() if s not in secs})
    assert not bad, f"cited sections missing from reference/methods.md: {bad}"
    for f in [*(ROOT / "nbs").glob("*.ipynb"), *(ROOT / "knife_repro").rglob("*.py"), ROOT / "README.md",
              *(ROOT / "reference").glob("*.md"), *(ROOT / "sweeps").glob("*.yaml")]:
        text = f.read_text()
        assert "shared/reference" not in text, f"{f.name} cites a file outside the repository"
        if f.parent.name != "reference":                                           # beside it, the bare name is fine
            assert not re.search(r"(?<![/\w])methods\.md`? ?§", text), f"{f.name}: cite reference/methods.md by its path"


def test_methods_file_repeats_no_reported_number():
    "Reported numbers live in paper_numbers.csv only: none of its multi-digit or decimal values is in methods.md."
    import csv
    text = (ROOT / "reference" / "methods.md").read_text()
    text = re.sub(r"§\s?\d+(\.\d+)*|^#+ \d+(\.\d+)*|arXiv \d+\.\d+|\b(19|20)\d\d\b", " ", text, flags=re.M)
    tokens = set(re.findall(r"(?<![\w.,])\d+(?:[.,]\d+)*(?![\w])", text))
    values = {r["value"] for r in csv.DictReader((ROOT / "reference" / "paper_numbers.csv").open()) if r["value"]}
    big = {v for v in values if "." in v or len(v.lstrip("-")) >= 2}
    assert big and not big & tokens, sorted(big & tokens)
