"""The one-way arrows of docs/ARCHITECTURE.md, checked on the source: no module of a lower
layer imports one of a higher layer (imports parsed with ``ast``, including imports inside
functions, ``from slt_llm import X`` and relative imports)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "slt_llm"

# lowest first; a module may import its own layer and any lower one
LAYERS = [
    {"__init__", "errors", "config", "distributed", "run_layout", "progress", "metrics", "faults", "allocator"},
    {"data"},
    {"synth"},
    {"models"},
    {"contrastive"},
    {"training"},
    {"inference"},
    {"demo"},
    {"cli", "__main__"},  # the one command-line layer: nothing below imports it
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def _room(parts: list[str]) -> str:
    """The room (top-level module or subpackage of slt_llm) of a dotted path below slt_llm."""
    return parts[0] if parts else "__init__"


def _imported_rooms(tree: ast.AST, module_parts: list[str], is_package: bool) -> list[tuple[int, str]]:
    """(line, room) of every slt_llm room ``tree`` imports."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "slt_llm":
                    out.append((node.lineno, _room(parts[1:])))
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                pkg = module_parts if is_package else module_parts[:-1]
                base = pkg[:len(pkg) - (node.level - 1)] if node.level > 1 else pkg
                parts = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "slt_llm":
                parts = node.module.split(".")[1:]
            else:
                continue
            if parts:
                out.append((node.lineno, _room(parts)))
            else:  # from slt_llm import a, b
                out += [(node.lineno, alias.name) for alias in node.names]
    return out


def violations(root: Path) -> list[str]:
    """``path:line: room (layer i) imports room (layer j)`` for every upward import under ``root``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = list(rel.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        here = _room(parts)
        if here not in RANK:
            found.append(f"{path}: room {here!r} has no layer in tests/test_layering.py (add it, and to ARCHITECTURE.md)")
            continue
        tree = ast.parse(path.read_text(), str(path))
        for line, there in _imported_rooms(tree, parts, is_package):
            if there not in RANK:
                continue  # e.g. `from slt_llm import __version__`
            if RANK[there] > RANK[here]:
                found.append(f"{path.relative_to(root.parent)}:{line}: {here} (layer {RANK[here]}) imports "
                             f"{there} (layer {RANK[there]})")
    return found


def test_no_lower_layer_imports_a_higher_one():
    assert violations(ROOT) == []


def test_every_room_is_in_a_layer():
    rooms = {p.stem for p in ROOT.glob("*.py")} | {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    assert rooms <= set(RANK), sorted(rooms - set(RANK))


@pytest.mark.parametrize("source,expect", [
    ("from slt_llm.training import checkpoint\n", "data (layer 1) imports training (layer 5)"),
    ("def f():\n    import slt_llm.inference.translate\n", "data (layer 1) imports inference (layer 6)"),
    ("from slt_llm import models\n", "data (layer 1) imports models (layer 3)"),
    ("from ..contrastive import loss\n", "data (layer 1) imports contrastive (layer 4)"),
    ("from slt_llm.synth import render\n", "data (layer 1) imports synth (layer 2)"),
    ("from slt_llm.config import ClipConfig\nfrom . import video\n", None),
])
def test_checker_catches_a_planted_violation(tmp_path, source, expect):
    pkg = tmp_path / "slt_llm"
    for d in ("data", "training", "models", "contrastive", "inference"):
        (pkg / d).mkdir(parents=True)
        (pkg / d / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "config.py").write_text("from slt_llm.errors import ConfigError\n")
    (pkg / "training" / "stage.py").write_text("from slt_llm.data import dataset\nfrom ..models import llm\n")
    (pkg / "data" / "bad.py").write_text(source)
    found = violations(pkg)
    if expect is None:
        assert found == []
    else:
        assert len(found) == 1 and found[0].startswith("slt_llm/data/bad.py:") and expect in found[0], found


def _modules(root: Path):
    for path in sorted(root.rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def test_only_the_cli_layer_parses_arguments():
    """argparse lives in slt_llm/cli/ alone: every other module takes typed arguments."""
    found = []
    for path, tree in _modules(ROOT):
        if path.relative_to(ROOT).parts[0] == "cli":
            continue
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "argparse" for n in names):
                found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}")
    assert found == []


def test_nothing_but_main_imports_the_cli():
    """slt_llm.cli is the top: within the package only ``python -m slt_llm`` (__main__) reaches it
    (scripts/ and eval/ may too)."""
    found = []
    for path, tree in _modules(ROOT):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ("cli", "__main__.py"):
            continue
        parts = list(rel.with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found += [f"{rel}:{line}" for line, room in _imported_rooms(tree, parts, is_package) if room == "cli"]
    assert found == []
