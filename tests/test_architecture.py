"""docs/ARCHITECTURE.md stays true: its layout names every module under slt_llm/, and no
module under slt_llm/training/ grows past 500 lines (split it along a seam instead)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / "slt_llm"
DOC = REPO / "docs" / "ARCHITECTURE.md"
MAX_TRAINING_LINES = 500


def layout_entries(text: str) -> set[str]:
    """Paths (relative to slt_llm/) named in the first code block after '## Layout': an entry
    is a line indented by 2 spaces per level whose first word ends in '.py' or '/'."""
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    found, stack = set(), []
    for line in block.splitlines():
        m = re.match(r"^( *)(\S+)", line)
        if not m or len(m.group(1)) % 2 or len(m.group(1)) > 8:
            continue  # blank, or a continuation line of a description
        level, name = len(m.group(1)) // 2, m.group(2)
        if not name.endswith((".py", "/")):
            continue
        stack = stack[:level] + [name.rstrip("/")]
        if stack[0] == "slt_llm" and name.endswith(".py"):
            found.add("/".join(stack[1:]))
    return found


def modules() -> set[str]:
    """Every module file under slt_llm/ (an empty package __init__.py is no module of its own)."""
    return {p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*.py")
            if not (p.name == "__init__.py" and not p.read_text().strip())}


def test_architecture_names_every_module():
    named = layout_entries(DOC.read_text())
    assert sorted(modules() - named) == [], "modules missing from docs/ARCHITECTURE.md's layout"
    assert sorted(named - modules()) == [], "docs/ARCHITECTURE.md names modules that do not exist"


def test_layout_parser_finds_nested_entries():
    text = ("## Layout\n\n```\nslt_llm/\n  a.py           one\n  pkg/\n    b.py         two\n"
            "                 c.py continues the line above\n  d.py         three\nother/\n  e.py\n```\n")
    assert layout_entries(text) == {"a.py", "pkg/b.py", "d.py"}


def test_training_modules_stay_under_500_lines():
    sizes = {p.name: len(p.read_text().splitlines()) for p in (ROOT / "training").glob("*.py")}
    assert {k: v for k, v in sizes.items() if v > MAX_TRAINING_LINES} == {}
