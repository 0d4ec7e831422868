"""Batch translation: bad files become error rows, resume never duplicates,
CSV, incomplete model folder refused before any video is read, batching does
not change greedy outputs, manifest input + eval round trip, two processes."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from slt_llm.cli import main
from slt_llm.errors import ConfigError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))
from bench_translate import tiny_overrides  # noqa: E402  (the same tiny model as the benchmark)

from slt_llm.inference import translate as tr  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, tiny_llama) -> Path:
    import torch

    from slt_llm.config import SLTConfig, load_config
    from slt_llm.models.slt_model import SLTModel

    cfg = load_config(SLTConfig, None, tiny_overrides(tiny_llama))
    torch.manual_seed(0)
    model = SLTModel.build(cfg)
    model.clip_cfg = cfg.data.clip  # as training records it
    out = tmp_path_factory.mktemp("slt_model") / "model"
    model.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def loaded(tiny_model):
    from slt_llm.models.slt_model import SLTModel

    return SLTModel.from_pretrained(str(tiny_model), device="cpu")


def _rows(path: Path) -> list:
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory, tiny_corpus) -> Path:
    """Good test videos (+ .pose sidecars, one in a subfolder), a video without
    keypoints, and bad files: empty, truncated, text named .mp4."""
    d = tmp_path_factory.mktemp("videos")
    rows = [json.loads(l) for l in (tiny_corpus / "test.jsonl").read_text().splitlines()]
    (d / "sub").mkdir()
    for i, r in enumerate(rows):
        src = tiny_corpus / r["video"]
        dst = (d / "sub" if i == 0 else d) / f"{r['id']}.mp4"
        shutil.copy(src, dst)
        shutil.copy(src.with_suffix(".pose"), dst.with_suffix(".pose"))
    good = (tiny_corpus / rows[0]["video"]).read_bytes()
    (d / "zz_empty.mp4").write_bytes(b"")
    (d / "zz_truncated.mp4").write_bytes(good[: len(good) // 3])
    (d / "zz_text.mp4").write_text("this is not a video\n")
    (d / "zz_nopose.mp4").write_bytes(good)
    (d / "README.txt").write_text("not an input")
    return d


def test_folder_with_bad_files(tmp_path, tiny_model, video_folder, tiny_corpus, capsys):
    out = tmp_path / "out.jsonl"
    code = main(["translate", "--model", str(tiny_model), "--input", str(video_folder), "--out", str(out),
                 "--batch-size", "3", "--num-workers", "1", "--max-new-tokens", "6", "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err
    assert "6 translated, 4 failed" in err
    rows = _rows(out)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == 10
    test_ids = [json.loads(l)["id"] for l in (tiny_corpus / "test.jsonl").read_text().splitlines()]
    expect_good = {f"sub/{test_ids[0]}", *test_ids[1:]}
    by_id = {r["id"]: r for r in rows}
    for i in expect_good:
        assert "error" not in by_id[i] and isinstance(by_id[i]["translation"], str)
        assert Path(by_id[i]["path"]).exists()
    for name in ("zz_empty", "zz_truncated", "zz_text", "zz_nopose"):
        r = by_id[name]
        assert r["translation"] is None and name in r["error"] and "\n" not in r["error"]
    assert "pose" in by_id["zz_nopose"]["error"].lower()


def test_batching_does_not_change_greedy_outputs(tmp_path, tiny_model, loaded, tiny_corpus):
    man = tiny_corpus / "test.jsonl"
    one, many = tmp_path / "one.jsonl", tmp_path / "many.jsonl"
    tr.translate(tiny_model, man, one, batch_size=1, num_workers=0, max_new_tokens=8, model=loaded, progress=False)
    s = tr.translate(tiny_model, man, many, batch_size=4, num_workers=1, max_new_tokens=8, model=loaded, progress=False)
    assert s["translated"] == 6 and s["failed"] == 0
    a = {r["id"]: r["translation"] for r in _rows(one)}
    b = {r["id"]: r["translation"] for r in _rows(many)}
    assert a == b and len(a) == 6
    # and the plain path (one clip, model.generate) agrees too
    from slt_llm.data.dataset import SLTDataset, collate_clips
    from slt_llm.data.manifest import read_manifest

    samples = list(read_manifest(man))
    ds = SLTDataset(samples[:2], tr.clip_config_of(tiny_model), on_error="skip")
    for i in range(2):
        item = ds[i]
        assert loaded.generate(collate_clips([item]), num_beams=1, max_new_tokens=8)[0] == a[item["id"]]
    # beam search runs through the same path
    beam = tmp_path / "beam.jsonl"
    sb = tr.translate(tiny_model, man, beam, batch_size=6, num_beams=2, num_workers=0, max_new_tokens=4, model=loaded, progress=False)
    assert sb["translated"] == 6 and len(_rows(beam)) == 6


def test_resume_after_interruption_no_duplicates(tmp_path, tiny_model, loaded, tiny_corpus):
    man = tiny_corpus / "test.jsonl"
    out = tmp_path / "out.jsonl"

    def stop(bi, rows):  # Ctrl-C right after the first batch was written
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tr.translate(tiny_model, man, out, batch_size=2, num_workers=0, max_new_tokens=6, model=loaded,
                     progress=False, on_batch=stop)
    first = _rows(out)
    assert len(first) == 2
    # a SIGKILL in the middle of a write leaves a partial last line
    with open(out, "a") as f:
        f.write('{"id": "' + "x" * 5)
    s = tr.translate(tiny_model, man, out, batch_size=2, num_workers=0, max_new_tokens=6, model=loaded, progress=False)
    assert s["already_done"] == 2 and s["translated"] == 4
    rows = _rows(out)
    assert len(rows) == 6 and len({r["id"] for r in rows}) == 6
    assert rows[:2] == first
    # running again is a no-op
    s = tr.translate(tiny_model, man, out, batch_size=2, num_workers=0, max_new_tokens=6, model=loaded, progress=False)
    assert s["already_done"] == 6 and s["translated"] == 0 and len(_rows(out)) == 6


def test_csv_output_and_eval_round_trip(tmp_path, tiny_model, loaded, tiny_corpus, capsys):
    man = tiny_corpus / "test.jsonl"
    out = tmp_path / "out.csv"
    s = tr.translate(tiny_model, man, out, batch_size=4, num_workers=0, max_new_tokens=6, model=loaded, progress=False)
    assert s["translated"] == 6
    rows = _rows(out)
    assert list(rows[0].keys()) == ["id", "path", "translation", "error"]
    assert len(rows) == 6 and all(r["error"] == "" for r in rows)
    # partial CSV row from a kill: cut and redone, header not repeated
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:-1]) + lines[-1][:5])
    s = tr.translate(tiny_model, man, out, batch_size=4, num_workers=0, max_new_tokens=6, model=loaded, progress=False)
    assert s["translated"] == 1 and len(_rows(out)) == 6
    assert out.read_text().count("id,path,translation,error") == 1
    assert main(["eval", "--hyp", str(out), "--ref", str(man)]) == 0
    assert "BLEU-4" in capsys.readouterr().out


def test_incomplete_model_folder_refused_before_reading_videos(tmp_path, tiny_model, video_folder, monkeypatch, capsys):
    broken = tmp_path / "model"
    shutil.copytree(tiny_model, broken)
    (broken / "encoder.safetensors").unlink()

    def boom(*a, **k):
        raise AssertionError("inputs were read before the model folder was checked")

    monkeypatch.setattr(tr, "list_inputs", boom)
    with pytest.raises(ConfigError, match="encoder.safetensors"):
        tr.translate(broken, video_folder, tmp_path / "o.jsonl")
    code = main(["translate", "--model", str(broken), "--input", str(video_folder), "--out", str(tmp_path / "o.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and "incomplete model folder" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.jsonl").exists()
    with pytest.raises(ConfigError, match="model folder not found"):
        tr.translate(tmp_path / "nope", video_folder, tmp_path / "o.jsonl")


@pytest.mark.slow
def test_two_processes_write_one_merged_output(tmp_path, tiny_model, tiny_corpus):
    """torchrun with 2 gloo processes: inputs split, shards merged by rank 0,
    no duplicates, no shards left; a second run does nothing."""
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(29500 + os.getpid() % 1000),
           "-m", "slt_llm.cli", "translate", "--model", str(tiny_model), "--input", str(tiny_corpus / "test.jsonl"),
           "--out", str(out), "--batch-size", "2", "--num-workers", "0", "--max-new-tokens", "4", "--device", "cpu", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = _rows(out)
    assert sorted(r_["id"] for r_ in rows) == sorted(json.loads(l)["id"] for l in (tiny_corpus / "test.jsonl").read_text().splitlines())
    assert not list(tmp_path.glob("out.jsonl.part-*"))
    assert "6 translated, 0 failed" in r.stdout


def test_leftover_shards_are_merged_once(tmp_path, tiny_model, loaded, tiny_corpus):
    """Shards of an interrupted multi-process run (one with a partial last
    line) are merged by the next run, whatever its process count; rows
    already in the output are not repeated; the rest is translated."""
    man = tiny_corpus / "test.jsonl"
    ids = [json.loads(l)["id"] for l in man.read_text().splitlines()]
    out = tmp_path / "out.jsonl"
    tr.RowFile(out).append([{"id": ids[0], "path": "a", "translation": "t0"}])
    tr.RowFile(tmp_path / "out.jsonl.part-0").append([{"id": ids[0], "path": "a", "translation": "t0"},
                                                      {"id": ids[1], "path": "b", "translation": "t1"}])
    tr.RowFile(tmp_path / "out.jsonl.part-1").append([{"id": ids[2], "path": "c", "translation": None, "error": "c: bad"}])
    with open(tmp_path / "out.jsonl.part-1", "a") as f:
        f.write('{"id": "' + ids[3])
    s = tr.translate(tiny_model, man, out, batch_size=4, num_workers=0, max_new_tokens=4, model=loaded, progress=False)
    assert s["already_done"] == 3 and s["translated"] == 3
    rows = _rows(out)
    assert [r["id"] for r in rows[:3]] == ids[:3] and rows[2]["error"] == "c: bad"
    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert not list(tmp_path.glob("out.jsonl.part-*"))
    assert tr.merge_shards(out) == 0


def test_missing_keypoints_extracted_by_registered_backend(tmp_path, tiny_model, loaded, tiny_corpus):
    """Videos without .pose: the configured extractor runs once per video, its
    result is cached as a sidecar in OUTPUT.poses/, and the translations equal
    those made with the original sidecars. The backend here re-reads the
    corpus's own .pose file with pose-format (a stand-in for MediaPipe, which
    needs a model file the tests do not have)."""
    import numpy as np
    from pose_format import Pose

    from slt_llm.data.extract import Extraction, KeypointExtractor, register_extractor

    rows = [json.loads(l) for l in (tiny_corpus / "test.jsonl").read_text().splitlines()][:3]
    src = {r["id"]: (tiny_corpus / r["video"]).with_suffix(".pose") for r in rows}
    calls = []

    class FromPoseFile(KeypointExtractor):
        name = "from_pose_file"

        def __init__(self, model=None, **kw):
            pass

        def extract(self, video_path):
            calls.append(Path(video_path).stem)
            p = Pose.read(src[Path(video_path).stem].read_bytes())
            d = np.asarray(p.body.data.filled(0))[:, 0]  # (T, 543, 3)
            c = np.asarray(p.body.confidence)[:, 0]
            return Extraction(d[..., :2].astype(np.float32), c.astype(np.float32), float(p.body.fps),
                              int(p.header.dimensions.width), int(p.header.dimensions.height))

    register_extractor("from_pose_file", FromPoseFile)
    vids = tmp_path / "videos"
    vids.mkdir()
    for r in rows:
        shutil.copy(tiny_corpus / r["video"], vids / f"{r['id']}.mp4")
    out = tmp_path / "out.jsonl"
    s = tr.translate(tiny_model, vids, out, batch_size=3, num_workers=0, max_new_tokens=6, model=loaded,
                     progress=False, extractor_backend="from_pose_file")
    assert s["translated"] == 3 and s["failed"] == 0 and sorted(calls) == sorted(src)
    assert sorted(p.name for p in (tmp_path / "out.jsonl.poses").iterdir()) == sorted(f"{i}.pose" for i in src)
    ref = tmp_path / "ref.jsonl"
    man = tmp_path / "m.jsonl"
    man.write_text("".join(json.dumps({"id": r["id"], "video": str(tiny_corpus / r["video"])}) + "\n" for r in rows))
    tr.translate(tiny_model, man, ref, batch_size=3, num_workers=0, max_new_tokens=6, model=loaded, progress=False,
                 allow_outside_root=True)
    assert {r["id"]: r["translation"] for r in _rows(out)} == {r["id"]: r["translation"] for r in _rows(ref)}


def test_retry_errors_replaces_error_rows(tmp_path, tiny_model, loaded, tiny_corpus, capsys):
    """A transient failure (an out-of-memory on one clip) is an error row;
    without --retry-errors a re-run keeps it, with it the clip is translated
    again, the new row takes the error row's place (no duplicate ids), and a
    retry run interrupted after its first batch is finished by the next run."""
    man = tiny_corpus / "test.jsonl"
    ids = [json.loads(l)["id"] for l in man.read_text().splitlines()]
    flaky = set(ids[1:4])

    class OOMOn:
        """``loaded`` whose generate fails on any batch holding a flaky id."""

        def eval(self):
            return self

        def generate(self, batch, **kw):
            if flaky & {str(i) for i in batch["ids"]}:
                raise RuntimeError("CUDA out of memory (simulated)")
            return loaded.generate(batch, **kw)

    kw = dict(batch_size=2, num_workers=0, max_new_tokens=6, progress=False)
    ref = tmp_path / "ref.jsonl"
    tr.translate(tiny_model, man, ref, model=loaded, **kw)
    want = {r["id"]: r["translation"] for r in _rows(ref)}

    out = tmp_path / "out.jsonl"
    s = tr.translate(tiny_model, man, out, model=OOMOn(), **kw)
    assert s["failed"] == 3 and sorted(s["failed_ids"]) == sorted(flaky)
    assert all("out of memory" in r["error"] for r in _rows(out) if r["id"] in flaky)
    s = tr.translate(tiny_model, man, out, model=loaded, **kw)  # plain resume: errors are final
    assert s["already_done"] == 6 and s["translated"] == 0

    def stop(bi, rows):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # the retry itself is interrupted after one batch
        tr.translate(tiny_model, man, out, model=loaded, retry_errors=True, on_batch=stop, **kw)
    mid = _rows(out)
    assert len(mid) == 3 + 2 and len({r["id"] for r in mid}) == 5
    code = main(["translate", "--model", str(tiny_model), "--input", str(man), "--out", str(out), "--retry-errors",
                 "--batch-size", "2", "--num-workers", "0", "--max-new-tokens", "6", "--no-progress"])
    assert code == 0
    assert "1 translated, 0 failed" in capsys.readouterr().out
    rows = _rows(out)
    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert {r["id"]: r["translation"] for r in rows} == want and not any(r.get("error") for r in rows)
    # CSV output: the rewrite keeps the header once
    csv_out = tmp_path / "out.csv"
    tr.translate(tiny_model, man, csv_out, model=OOMOn(), **kw)
    s = tr.translate(tiny_model, man, csv_out, model=loaded, retry_errors=True, **kw)
    assert s["retried"] == 3 and s["translated"] == 3
    assert csv_out.read_text().count("id,path,translation,error") == 1
    assert {r["id"]: r["translation"] for r in _rows(csv_out)} == want


def test_batch_loader_spreads_samples_over_workers_keeps_batches_and_restores_threads():
    """Workers decode single samples; batches come back whole, in order, with
    exactly their samples; torch threads are lowered while the workers run
    (cores - workers, at least 1) and restored after."""
    import torch

    from slt_llm.inference.translate import _batch_loader, compute_threads

    class Bad:  # error items: collate_clips lists them in "skipped" (id, message) in order
        def __len__(self):
            return 10

        def __getitem__(self, i):
            return {"error": f"bad {i}", "id": str(i), "index": i}

    batches = [[3, 1, 4], [0, 9], [2, 6, 5, 8, 7]]
    prev = torch.get_num_threads()
    expect = compute_threads(2, "cpu")
    seen, inside = [], []
    for b in _batch_loader(Bad(), batches, num_workers=2, device="cpu"):
        seen.append([int(i) for i, _ in b["skipped"]])
        inside.append(torch.get_num_threads())
    assert seen == batches
    assert torch.get_num_threads() == prev
    assert inside == [expect or prev] * 3
    cores = len(os.sched_getaffinity(0))
    assert (expect or prev) == max(1, min(prev, cores - 2))
    assert compute_threads(0, "cpu") is None and compute_threads(2, "cuda:0") is None
    assert [[int(i) for i, _ in b["skipped"]] for b in _batch_loader(Bad(), batches, num_workers=0, device="cpu")] == batches


def _trapped_llm(src: Path, dst: Path, marker: Path) -> Path:
    """A copy of an LLM folder whose config asks for custom code that, if ever imported,
    writes ``marker`` (the booby trap a stranger's model folder could carry)."""
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig",
                       "AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (dst / "config.json").write_text(json.dumps(cfg))
    code = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
    (dst / "configuration_evil.py").write_text(code + "from transformers import LlamaConfig as EvilConfig\n")
    (dst / "modeling_evil.py").write_text(code + "from transformers import LlamaForCausalLM as EvilModel\n")
    return dst


def test_a_model_folder_never_switches_on_remote_code(tmp_path, tiny_model, tiny_llama, tiny_corpus, capsys):
    """The folder's slt_config.yaml says trust_remote_code: true and its LLM carries an auto_map
    with code: translate refuses in one line and nothing from the folder runs; the user's own
    --trust-remote-code is the only switch."""
    import yaml

    from slt_llm.models.llm import llm_identity
    from slt_llm.models.slt_model import SLTModel

    marker = tmp_path / "PWNED"
    evil_llm = _trapped_llm(Path(tiny_llama), tmp_path / "evil_llm", marker)
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    raw = yaml.safe_load((folder / "slt_config.yaml").read_text())
    raw["llm"]["trust_remote_code"] = True
    raw["llm"]["path"] = str(evil_llm)
    (folder / "slt_config.yaml").write_text(yaml.safe_dump(raw))
    meta = json.loads((folder / "meta.json").read_text())  # the folder's author records the trapped LLM's identity
    meta["base_llm"] = {"path": str(evil_llm), **llm_identity(evil_llm)}
    (folder / "meta.json").write_text(json.dumps(meta))
    before = {p.name: p.read_bytes() for p in evil_llm.iterdir() if p.is_file()}
    inputs = tmp_path / "in"
    inputs.mkdir()
    row = json.loads((tiny_corpus / "test.jsonl").read_text().splitlines()[0])
    shutil.copy(tiny_corpus / row["video"], inputs / "a.mp4")
    shutil.copy((tiny_corpus / row["video"]).with_suffix(".pose"), inputs / "a.pose")
    code = main(["translate", "--model", str(folder), "--input", str(inputs), "--out", str(tmp_path / "o.jsonl"),
                 "--no-progress", "--num-workers", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "needs custom code" in err and "--trust-remote-code" in err
    assert len(err.strip().splitlines()) == 1
    assert not marker.exists()
    assert {p.name: p.read_bytes() for p in evil_llm.iterdir() if p.is_file()} == before
    # the folder's flag is ignored even when the LLM needs no code
    raw["llm"]["path"] = str(tiny_llama)
    (folder / "slt_config.yaml").write_text(yaml.safe_dump(raw))
    shutil.copy(tiny_model / "meta.json", folder / "meta.json")
    m = SLTModel.from_pretrained(str(folder))
    assert m.llm_cfg.trust_remote_code is False


def test_llm_weights_are_never_unpickled(tmp_path, tiny_llama):
    """An LLM folder with only a pickle (pytorch_model.bin) is refused in one line; the pickle,
    which would write a marker when unpickled, never is."""
    import pickle

    from slt_llm.config import LLMConfig
    from slt_llm.errors import ConfigError
    from slt_llm.models.llm import load_llm

    marker = tmp_path / "UNPICKLED"
    llm = tmp_path / "llm"
    shutil.copytree(tiny_llama, llm)
    (llm / "model.safetensors").unlink()

    class Trap:
        def __reduce__(self):
            return (Path.write_text, (marker, "ran"))

    (llm / "pytorch_model.bin").write_bytes(pickle.dumps(Trap()))
    with pytest.raises(ConfigError) as e:
        load_llm(LLMConfig(path=str(llm), use_lora=False), for_training=False)
    assert str(llm) in str(e.value) and "\n" not in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize("case", ["metrics_json", "other_manifest", "input_manifest", "device", "folder",
                                  "csv_other_header"])
def test_translate_never_writes_into_a_file_it_did_not_make(case, tmp_path, tiny_model, tiny_corpus, capsys):
    """Each refused before anything is touched: exit 2, one line naming the file, and the file
    byte-identical afterwards (issue 21: a metrics.json lost its last line, a manifest got
    translation rows appended, /dev/full was read until memory ran out)."""
    manifest = tmp_path / "test.jsonl"
    rows = [json.loads(x) for x in (tiny_corpus / "test.jsonl").read_text().splitlines()][:2]
    for r in rows:
        for k in ("video", "pose"):
            r[k] = str((tiny_corpus / r[k]).resolve())
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    inp = manifest
    if case == "metrics_json":
        out = tmp_path / "metrics.json"
        out.write_text(json.dumps({"bleu4": 12.5, "n": 2}, indent=1))  # no newline at the end
    elif case == "other_manifest":
        out = tmp_path / "dev.jsonl"
        out.write_text((tiny_corpus / "dev.jsonl").read_text())
    elif case == "input_manifest":
        out = manifest
    elif case == "device":
        out = Path("/dev/full")
    elif case == "folder":
        out = tmp_path / "outdir"
        out.mkdir()
    else:
        out = tmp_path / "o.csv"
        out.write_text("id,text\nx,hello\n")
    before = out.read_bytes() if out.is_file() else None
    code = main(["translate", "--model", str(tiny_model), "--input", str(inp), "--out", str(out),
                 "--no-progress", "--num-workers", "0", "--allow-outside-root"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(out) in err[0], err
    if before is not None:
        assert out.read_bytes() == before
    assert manifest.read_text().count("\n") == 2


def test_a_killed_runs_partial_row_is_cut_and_a_full_disk_is_one_line(tmp_path, monkeypatch):
    import errno

    from slt_llm.errors import InputError

    f = tr.RowFile(tmp_path / "o.jsonl")
    f.append([{"id": "a", "path": "a.mp4", "translation": "hello"}])
    with open(f.path, "a") as h:
        h.write('{"id": "b", "path": "b.mp4", "transl')  # killed mid-write
    f.check_writable()
    assert [r["id"] for r in f.load()] == ["a"] and f.path.read_text().endswith("}\n")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tr.os, "fsync", full)
    with pytest.raises(InputError) as e:
        f.append([{"id": "c", "path": "c.mp4", "translation": "x"}])
    assert "no space left" in str(e.value) and "\n" not in str(e.value)


def test_translate_options_one_dataclass(tmp_path, tiny_model, loaded, tiny_corpus):
    """translate() takes its options as one TranslateOptions (what the CLI builds, one field per
    flag); keywords still work and replace the options' fields; an unknown one is a TypeError."""
    import dataclasses

    from slt_llm.cli.infer import translate_parser

    fields = {f.name for f in dataclasses.fields(tr.TranslateOptions)}
    dests = {a.dest for a in translate_parser()._actions if a.dest not in ("help", "model", "input", "out")}
    rename = {"llm": "llm_path", "clip": "clip_overrides", "no_progress": "progress", "no_merge_lora": "merge_lora"}
    assert {rename.get(d, d) for d in dests} == fields

    man = tiny_corpus / "test.jsonl"
    opts = tr.TranslateOptions(batch_size=3, num_workers=0, max_new_tokens=6, progress=False)
    a = tr.translate(tiny_model, man, tmp_path / "a.jsonl", opts, model=loaded)
    b = tr.translate(tiny_model, man, tmp_path / "b.jsonl", batch_size=3, num_workers=0, max_new_tokens=6,
                     progress=False, model=loaded)
    c = tr.translate(tiny_model, man, tmp_path / "c.jsonl", dataclasses.replace(opts, max_new_tokens=1),
                     max_new_tokens=6, model=loaded)  # a keyword replaces the field
    assert a["translated"] == b["translated"] == c["translated"] == 6
    got = {k: {r["id"]: r["translation"] for r in _rows(tmp_path / f"{k}.jsonl")} for k in "abc"}
    assert got["a"] == got["b"] == got["c"] and len(got["a"]) == 6
    with pytest.raises(TypeError):
        tr.translate(tiny_model, man, tmp_path / "d.jsonl", batch_sise=3, model=loaded)


_OPENED: list | None = None  # paths opened while a test listens (an audit hook cannot be removed)


def _audit(event, args):
    if _OPENED is not None and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.path.realpath(os.fsdecode(args[0])))


@pytest.mark.parametrize("layout", ["clip.yaml", "clip in meta.json (older folders)"])
def test_translate_reads_each_model_folder_file_once(layout, tmp_path, tiny_model, tiny_corpus, capsys):
    """One translate run (through the CLI, loading the model itself) opens the model folder once:
    meta.json, slt_config.yaml and the clip settings are each read exactly one time."""
    global _OPENED
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    if layout != "clip.yaml":  # saved before clip.yaml existed: the settings live in meta.json
        meta = json.loads((folder / "meta.json").read_text())
        import yaml

        meta["clip"] = yaml.safe_load((folder / "clip.yaml").read_text())
        (folder / "meta.json").write_text(json.dumps(meta))
        (folder / "clip.yaml").unlink()
    row = json.loads((tiny_corpus / "test.jsonl").read_text().splitlines()[0])
    videos = tmp_path / "videos"
    videos.mkdir()
    for suffix in (".mp4", ".pose"):
        shutil.copy((tiny_corpus / row["video"]).with_suffix(suffix), videos / f"a{suffix}")
    if not getattr(_audit, "installed", False):
        sys.addaudithook(_audit)
        _audit.installed = True
    _OPENED = []
    try:
        code = main(["translate", "--model", str(folder), "--input", str(videos), "--out", str(tmp_path / "o.jsonl"),
                     "--num-workers", "0", "--max-new-tokens", "2", "--no-progress"])
        opened, _OPENED = _OPENED, None
    finally:
        _OPENED = None
    assert code == 0, capsys.readouterr().err
    assert len(_rows(tmp_path / "o.jsonl")) == 1
    counts = {name: opened.count(os.path.realpath(folder / name)) for name in ("meta.json", "slt_config.yaml", "clip.yaml")}
    want = {"meta.json": 1, "slt_config.yaml": 1, "clip.yaml": 1 if layout == "clip.yaml" else 0}
    assert counts == want, counts


def test_merged_lora_translates_as_the_separate_adapters_do(tmp_path, tiny_model, tiny_corpus):
    """translate() folds the LoRA adapters into the base weights of the model it loads itself
    (SLTModel.merge_lora: fewer operations per generated token). The translations are those of
    the adapters applied separately; the merged model refuses a training forward; a model
    passed in is never merged; a quantized base is never merged."""
    import dataclasses

    import torch
    from safetensors.torch import load_file, save_file

    from slt_llm.data.dataset import SLTDataset, collate_clips
    from slt_llm.data.manifest import read_manifest
    from slt_llm.models.slt_model import SLTModel

    # the fixture's adapters are fresh (lora_B = 0: merging would change nothing); these matter
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    ad = next((folder / "adapter").glob("adapter_model.safetensors"))
    g = torch.Generator().manual_seed(1)
    w = {k: (torch.randn(v.shape, generator=g) * 0.5 if "lora_B" in k else v) for k, v in load_file(ad).items()}
    save_file(w, ad)
    man = tiny_corpus / "test.jsonl"
    opts = tr.TranslateOptions(batch_size=3, num_workers=0, max_new_tokens=6, progress=False)

    separate = SLTModel.from_pretrained(str(folder), device="cpu")
    tr.translate(folder, man, tmp_path / "separate.jsonl", opts, model=separate)
    assert not separate.lora_merged  # a model passed in is its caller's: not merged
    tr.translate(folder, man, tmp_path / "merged.jsonl", opts)  # loads it, merges
    tr.translate(tiny_model, man, tmp_path / "fresh.jsonl", opts)
    got = {k: {r["id"]: r["translation"] for r in _rows(tmp_path / f"{k}.jsonl")} for k in ("separate", "merged", "fresh")}
    assert got["merged"] == got["separate"] and len(got["merged"]) == 6
    assert got["fresh"] != got["separate"]  # the adapters change the translations: the check can fail

    # the merge itself: logits equal to float rounding, once, then inference only
    m = SLTModel.from_pretrained(str(folder), device="cpu").eval()
    ds = SLTDataset(list(read_manifest(man))[:2], m.clip_cfg or tr.clip_config_of(folder), on_error="skip")
    batch = collate_clips([ds[0], ds[1]])
    with torch.no_grad():
        fresh = SLTModel.from_pretrained(str(tiny_model), device="cpu").eval()(batch, return_logits=True)["logits"]
        before = m(batch, return_logits=True)["logits"]
        n_lora = sum(1 for k in w if "lora_A" in k)
        assert m.merge_lora() == n_lora and m.lora_merged and m.merge_lora() == 0
        after = m(batch, return_logits=True)["logits"]
    effect = (before - fresh).abs().max()  # what the adapters change in the logits
    print(f"max |merged - separate| {float((after - before).abs().max()):.2e}, adapters' effect {float(effect):.2e}")
    assert float((after - before).abs().max()) < 1e-3 * float(effect)
    m.train()
    with pytest.raises(RuntimeError, match="merged"):
        m(batch)
    # a bf16 base: the merged weight is rounded to bf16; the logits stay within bf16's noise
    h = SLTModel.from_pretrained(str(folder), device="cpu").eval()
    h.llm.to(torch.bfloat16)
    with torch.no_grad():
        sep16 = h(batch, return_logits=True)["logits"].float()
        assert h.merge_lora() == n_lora
        mer16 = h(batch, return_logits=True)["logits"].float()
    merge_err, bf16_err = float((mer16 - sep16).abs().max()), float((sep16 - before).abs().max())
    print(f"bf16: max |merged - separate| {merge_err:.2e}; bf16 itself vs fp32 {bf16_err:.2e}")
    assert merge_err < 0.05 * float(effect) and merge_err <= bf16_err  # no more than bf16 costs anyway
    q = SLTModel.from_pretrained(str(folder), device="cpu")
    q.llm_cfg = dataclasses.replace(q.llm_cfg, load_in_4bit=True)  # as a QLoRA model records it
    base = {k: v.clone() for k, v in q.llm.named_parameters() if "lora_" not in k}
    assert q.merge_lora() == 0 and not q.lora_merged
    assert all(torch.equal(v, dict(q.llm.named_parameters())[k]) for k, v in base.items())
