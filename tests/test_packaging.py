"""What an installed user gets: the wheel carries every module, the recipes (slt_llm/configs)
and the DeepSpeed / accelerate launch configs (slt_llm/ds_configs) and the ``slt-llm`` entry
point; installed alone (outside the checkout) it lists and loads a recipe and finds a shipped
DeepSpeed JSON. ``scripts/`` is not in the wheel: each script there is a thin launcher of a
command the installed package has (``slt-llm CMD`` / ``python -m slt_llm CMD`` /
``accelerate launch -m slt_llm.cli CMD``).

The wheel is built once per module from a copy of the source (``pip wheel --no-deps
--no-build-isolation``: about 2 s, nothing written into the checkout)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "slt_llm"


def _package_files() -> list[str]:
    """Every file of the package a wheel must carry, as wheel paths (slt_llm/...)."""
    out = []
    for p in sorted(PKG.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
            out.append(p.relative_to(ROOT).as_posix())
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(PKG, src / "slt_llm", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(out), str(src)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (whl,) = out.glob("slt_llm-*.whl")
    return whl


def test_wheel_carries_modules_recipes_and_ds_configs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    want = _package_files()
    assert [n for n in want if n not in names] == []
    recipes = [n for n in want if n.startswith("slt_llm/configs/") and n.endswith(".yaml")]
    ds = [n for n in want if n.startswith("slt_llm/ds_configs/")]
    assert len(recipes) >= 8 and "slt_llm/configs/demo_stage1.yaml" in recipes
    assert {"slt_llm/ds_configs/zero3.json", "slt_llm/ds_configs/accelerate_zero3.yaml"} <= set(ds)
    assert not any(n.startswith(("scripts/", "tests/", "eval/")) for n in names)
    entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry).decode()
    assert "slt-llm = slt_llm.cli:main" in text


def test_installed_wheel_works_outside_the_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(target))  # the installed copy before the checkout's editable one
    r = subprocess.run([sys.executable, "-m", "slt_llm", "recipes"], cwd=work, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "demo_stage1" in r.stdout and "phoenix2014t_stage2" in r.stdout, r.stderr
    code = ("import slt_llm, slt_llm.config as c\n"
            "print(slt_llm.__file__)\n"
            "cfg = c.load_config(c.Stage1Config, 'recipe:demo_stage1')\n"
            "print(c.resolve_deepspeed_path('ds_configs/zero3.json'))\n"
            "print(sorted(p.name for p in c.ds_configs_dir().iterdir()))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    where, ds_json, listing = r.stdout.splitlines()
    assert Path(where).is_relative_to(target)
    assert Path(ds_json).is_relative_to(target) and Path(ds_json).is_file()
    assert "accelerate_zero3.yaml" in listing


def test_every_script_is_a_thin_launcher_of_a_command():
    """scripts/*.py are checkout conveniences for `accelerate launch`: each only calls
    slt_llm.cli.main with one command the installed package has (so nothing lives only there)."""
    from slt_llm.cli import COMMANDS

    scripts = sorted((ROOT / "scripts").glob("*.py"))
    assert scripts
    for s in scripts:
        tree = ast.parse(s.read_text())
        imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert all(isinstance(n, ast.Import) and [a.name for a in n.names] == ["sys"]
                   or isinstance(n, ast.ImportFrom) and n.module == "slt_llm.cli" and [a.name for a in n.names] == ["main"]
                   for n in imports), s.name
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "main"]
        assert len(calls) == 1, s.name
        (arg,) = calls[0].args
        assert isinstance(arg, ast.List) and isinstance(arg.elts[0], ast.Constant), s.name
        assert arg.elts[0].value in COMMANDS, (s.name, arg.elts[0].value)
        defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        assert defs == [], s.name  # no logic of its own
