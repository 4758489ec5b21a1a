"The README's generated blocks match the committed records (python -m knife_repro.readme rebuilds them)."
from knife_repro.core import PROJECT_ROOT
from knife_repro.readme import BLOCKS, render


def test_readme_blocks_are_built_from_the_committed_records():
    text = (PROJECT_ROOT / "README.md").read_text()
    assert all(f"<!-- begin: {name} -->" in text for name in BLOCKS)
    assert render(text) == text, "README blocks are stale: run python -m knife_repro.readme and commit README.md"
