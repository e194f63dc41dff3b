"""The README keeps its two set-up commands and links every document in docs/."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_links_every_doc() -> None:
    readme = (ROOT / "README.md").read_text()
    docs = sorted(path.name for path in (ROOT / "docs").glob("*.md"))
    assert [name for name in docs if f"(docs/{name})" not in readme] == []


def test_readme_keeps_the_set_up_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make dev     # run the platform locally" in readme
    assert "make test    # lint, type-check and run every test" in readme
    assert "exec make test" in (ROOT / ".ci" / "run").read_text()
