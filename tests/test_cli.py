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


def test_every_option_of_every_command_has_help():
    from slt_llm.cli import COMMANDS, parser
    from slt_llm.cli.options import missing_help

    missing = {name: missing_help(parser(name)) for name in COMMANDS}
    assert {k: v for k, v in missing.items() if v} == {}


# old spelling -> (command, new flag's dest, arguments the command needs besides it)
OLD_SPELLINGS = {
    ("translate", "--output"): ("out", ["--model", "m", "--input", "i"]),
    ("translate", "--llm-path"): ("llm", ["--model", "m", "--input", "i", "--out", "o.jsonl"]),
    ("export", "--llm-path"): ("llm", ["--model", "m", "--out", "o"]),
    ("extract", "--model"): ("extractor_model", ["video.mp4"]),
    ("extract", "--backend"): ("extractor_backend", ["video.mp4"]),
    ("extract", "--out-dir"): ("out", ["video.mp4"]),
    ("hand-teacher", "--out-dir"): ("out", ["videos/"]),
}


def test_old_spellings_still_work_hidden_and_warn(capsys):
    import pytest

    from slt_llm.cli import parser

    for (command, old), (dest, rest) in OLD_SPELLINGS.items():
        p = parser(command)
        a = p.parse_args([*rest, old, "VALUE"])
        assert getattr(a, dest) == "VALUE", (command, old)
        err = capsys.readouterr().err.strip().splitlines()
        new = "--" + dest.replace("_", "-")
        assert len(err) == 1 and f"{old} is deprecated" in err[0] and f"use {new}" in err[0], (command, err)
        assert old not in p.format_help()  # hidden from --help
        assert getattr(p.parse_args([*rest, new, "VALUE"]), dest) == "VALUE"
        assert capsys.readouterr().err == ""  # the new spelling: no warning
    # a required flag is still required when neither spelling is given
    with pytest.raises(SystemExit):
        parser("translate").parse_args(["--model", "m", "--input", "i"])
    assert "required: --out" in capsys.readouterr().err


def test_old_spelling_end_to_end(tmp_path):
    """`slt-llm translate ... --output FILE` runs as --out (here up to the missing model folder)."""
    r = _run("translate", "--model", str(tmp_path / "nope"), "--input", str(tmp_path), "--output", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2
    assert "--output is deprecated" in r.stderr and "use --out" in r.stderr
    assert "model folder not found" in r.stderr and "Traceback" not in r.stderr


def test_bash_completion_lists_every_command_and_their_flags(tmp_path):
    """`slt-llm completion bash` is made from the parsers: every command, each command's flags
    (not the hidden old spellings), choices of a flag; and bash itself completes with it."""
    import re
    import shutil

    import pytest

    from slt_llm.cli import COMMANDS
    from slt_llm.cli.completion import command_flags

    r = _run("completion", "bash")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    script = r.stdout
    assert "complete -o default -o bashdefault -F _slt_llm slt-llm" in script
    top = re.search(r"compgen -W '([^']*)'", script).group(1).split()
    assert set(COMMANDS) <= set(top) and "--version" in top
    for name in COMMANDS:
        line = re.search(rf"^\s+{re.escape(name)}\) opts='([^']*)'", script, re.M)
        assert line is not None, name
        assert set(line.group(1).split()) == set(command_flags(name)[0]), name
    translate_flags = re.search(r"^\s+translate\) opts='([^']*)'", script, re.M).group(1).split()
    assert {"--model", "--input", "--out", "--extractor-model", "--retry-errors"} <= set(translate_flags)
    assert "--output" not in translate_flags  # the hidden old spelling of --out
    assert "'eval --tokenize') COMPREPLY=($(compgen -W '13a zh intl" in script

    if shutil.which("bash") is None:
        pytest.skip("no bash to run the script in")
    (tmp_path / "c.sh").write_text(script)

    def complete(*words):
        cmd = (f"source {tmp_path / 'c.sh'}; COMP_WORDS=(slt-llm {' '.join(repr(w) for w in words)}); "
               f"COMP_CWORD={len(words)}; _slt_llm; echo \"${{COMPREPLY[@]}}\"")
        return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60).stdout.split()

    assert complete("tra") == ["train", "translate"]
    assert complete("--verbose", "translate", "--extr") == ["--extractor-model", "--extractor-backend"]
    assert complete("eval", "--tokenize", "") == ["13a", "zh", "intl", "none", "char"]
    assert complete("completion", "") == ["bash"]
    assert complete("translate", "--model", "") == []  # file names: bash's default
