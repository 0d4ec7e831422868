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


def test_version_and_python_dash_m_slt_llm():
    from slt_llm import __version__

    r = subprocess.run([sys.executable, "-m", "slt_llm", "--version"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == f"slt-llm {__version__}"
    r = subprocess.run([sys.executable, "-m", "slt_llm", "--help"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "synth" in r.stdout and "corpus-stats" in r.stdout


def test_missing_keypoints_message_names_flags_that_exist(tmp_path):
    """translate has --pose-dir, not --pose: the hint must not send users to a flag that is not there."""
    from slt_llm.data.clip import find_pose
    from slt_llm.errors import InputError

    v = tmp_path / "clip.mp4"
    v.write_bytes(b"")
    try:
        find_pose(v)
    except InputError as e:
        msg = str(e)
    assert "--pose-dir" in msg and "--pose FILE" not in msg and "clip.pose" in msg
