"""The CLI turns project errors into one line on stderr, exit 2, no traceback."""

import subprocess
import sys


def _run(*args):
    return subprocess.run([sys.executable, "-m", "slt_llm.cli", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_commands():
    r = _run("--help")
    assert r.returncode == 0
    for name in ("synth", "inspect", "train", "vlp", "translate", "eval", "demo"):
        assert name in r.stdout


def test_unknown_command():
    r = _run("frobnicate")
    assert r.returncode == 2 and "unknown command" in r.stderr


def test_bad_video_is_one_line_without_traceback(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n")
    r = _run("inspect", str(bad), "--out", str(tmp_path / "sheet.png"))
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip() and "WARNING" not in l and "warn" not in l.lower()]
    assert len(lines) == 1, r.stderr
    assert str(bad) in lines[0]
