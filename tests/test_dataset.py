"""SLTDataset over the tiny synthetic corpus plus bad rows; collate; cache; length batching."""

from __future__ import annotations

import dataclasses

import json
import os
import shutil

import numpy as np
import pytest
import torch

from slt_llm.config import ClipConfig
from slt_llm.data.clip import load_clip
from slt_llm.data.dataset import SLTDataset, collate_clips, estimate_frames, length_sorted_batches
from slt_llm.data.manifest import read_manifest, write_manifest
from slt_llm.errors import InputError

CFG = ClipConfig(full_size=32, hand_size=16, max_frames=40)


@pytest.fixture
def mixed(tmp_path, tiny_corpus):
    """A manifest of 4 good samples and 3 bad ones (indices 1, 3, 5)."""
    good = read_manifest(tiny_corpus / "train.jsonl")[:4]
    vids = tmp_path / "v"
    vids.mkdir()
    for s in good:  # inside the manifest's folder (paths may not leave it)
        for k in ("video", "pose"):
            setattr(s, k, shutil.copy(getattr(s, k), vids))
    src = good[0]
    zero = vids / "zero.mp4"
    zero.write_bytes(b"")
    shutil.copy(src.pose, vids / "zero.pose")
    text = vids / "text.mp4"
    text.write_text("this is not a video\n" * 20)
    shutil.copy(src.pose, vids / "text.pose")
    nopose = vids / "nopose.mp4"
    shutil.copy(src.video, nopose)
    bad = [
        type(src)(id="zero", video=str(zero), text="zero byte"),
        type(src)(id="text", video=str(text), text="a text file"),
        type(src)(id="nopose", video=str(nopose), text="no keypoints"),
    ]
    samples = [good[0], bad[0], good[1], bad[1], good[2], bad[2], good[3]]
    for s in good:  # keep explicit pose paths for the good ones
        assert s.pose is not None
    return write_manifest(tmp_path / "mixed.jsonl", samples)


def test_skip_and_count_then_good_samples_still_load(mixed):
    ds = SLTDataset(mixed, CFG)
    items = [ds[i] for i in range(len(ds))]
    errs = {it["id"]: it["error"] for it in items if "error" in it}
    assert sorted(errs) == ["nopose", "text", "zero"]
    assert ds.num_skipped == 3 and sorted(ds.errors) == [1, 3, 5]
    assert "zero.mp4" in errs["zero"] and "text.mp4" in errs["text"] and "nopose.mp4" in errs["nopose"]
    assert "no keypoints found" in errs["nopose"]
    assert all("\n" not in e for e in errs.values())
    for it in items:
        if "error" in it:
            continue
        s = ds.samples[it["index"]]
        ref = load_clip(s.video, CFG, pose=s.pose)
        T = ref.num_frames
        assert it["full"].shape == (T, 3, 32, 32) and it["left"].shape == (T, 3, 16, 16)
        assert it["keypoints"].shape == (T, 53, 3) and it["boxes"].shape == (T, 2, 4)
        np.testing.assert_array_equal(it["full"].numpy(), ref.full)
        np.testing.assert_allclose(it["keypoints"].numpy(), ref.keypoints)
        assert it["text"] == s.text and it["id"] == s.id
    # a failed sample is remembered: asking again gives the same error without decoding
    assert ds[1]["error"] == errs["zero"]
    assert ds.num_skipped == 3


def test_dataloader_batches_list_skipped_items(mixed):
    ds = SLTDataset(mixed, CFG)
    dl = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=False, collate_fn=collate_clips)
    batches = list(dl)
    assert [b["ids"] for b in batches] == [["train_00000", "train_00001"], ["train_00002", "train_00003"]]
    assert [i for b in batches for i, _ in b["skipped"]] == ["zero", "text", "nopose"]
    assert batches[1]["index"].tolist() == [4, 6]


def test_raise_mode_raises_input_error(mixed):
    ds = SLTDataset(mixed, CFG, on_error="raise")
    assert "error" not in ds[0]
    with pytest.raises(InputError, match="zero.mp4"):
        ds[1]
    with pytest.raises(InputError, match="no keypoints found"):
        ds[5]


def test_collate_pads_and_masks(tiny_corpus):
    ds = SLTDataset(tiny_corpus / "train.jsonl", CFG)
    items = [ds[i] for i in range(4)]
    lengths = [it["full"].shape[0] for it in items]
    assert len(set(lengths)) > 1  # clips differ in length
    b = collate_clips(items + [{"error": "x.mp4: broken", "id": "x", "index": 9}])
    T = max(lengths)
    assert b["full"].shape == (4, T, 3, 32, 32) and b["full"].dtype == torch.uint8
    assert b["keypoints"].shape == (4, T, 53, 3) and b["boxes"].shape == (4, T, 2, 4)
    assert b["times"].shape == (4, T) and b["frame_mask"].dtype == torch.bool
    assert b["lengths"].tolist() == lengths
    assert b["frame_mask"].sum(1).tolist() == lengths
    assert b["skipped"] == [("x", "x.mp4: broken")]
    assert b["texts"] == ds.texts[:4] and b["ids"] == ds.ids[:4] and b["index"].tolist() == [0, 1, 2, 3]
    for k, it in enumerate(items):
        L = lengths[k]
        assert torch.equal(b["right"][k, :L], it["right"])
        assert torch.equal(b["times"][k, :L], it["times"])
        assert not b["full"][k, L:].any() and not b["keypoints"][k, L:].any()
        assert b["frame_mask"][k, :L].all() and not b["frame_mask"][k, L:].any()


def test_all_bad_batch_has_zero_samples():
    b = collate_clips([{"error": "a: bad", "id": "a", "index": 0}, {"error": "b: bad", "id": "b", "index": 1}])
    assert b["ids"] == [] and b["lengths"].numel() == 0 and b["full"].shape[0] == 0
    assert b["frame_mask"].shape == (0, 0) and len(b["skipped"]) == 2


def test_cache_hit_returns_identical_arrays_and_changes_invalidate(tiny_corpus, tmp_path):
    samples = read_manifest(tiny_corpus / "train.jsonl")[:3]
    cache = tmp_path / "cache"
    ds = SLTDataset(samples, CFG, cache_dir=cache)
    first = [ds[i] for i in range(3)]
    assert (ds.cache_misses, ds.cache_hits) == (3, 0)
    assert len(list(cache.rglob("*.npz"))) == 3
    ds2 = SLTDataset(samples, CFG, cache_dir=cache)  # a later epoch / another run
    again = [ds2[i] for i in range(3)]
    assert (ds2.cache_misses, ds2.cache_hits) == (0, 3)
    for a, b in zip(first, again):
        for k in ("full", "left", "right", "keypoints", "boxes", "times"):
            assert a[k].dtype == b[k].dtype
            assert torch.equal(torch.nan_to_num(a[k]), torch.nan_to_num(b[k])), k
        assert a["fps"] == b["fps"]
    # another clip config is another key
    ds3 = SLTDataset(samples, ClipConfig(full_size=48, hand_size=16, max_frames=40), cache_dir=cache)
    assert ds3[0]["full"].shape[-1] == 48 and ds3.cache_misses == 1
    # a touched video is another key (mtime is part of it)
    st = os.stat(samples[0].video)
    os.utime(samples[0].video, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    ds4 = SLTDataset(samples, CFG, cache_dir=cache)
    ds4[0]
    assert ds4.cache_misses == 1
    # a corrupt cache entry is dropped and decoded again
    entry = cache / ds4.cache_key(1)[:2] / f"{ds4.cache_key(1)}.npz"
    entry.write_bytes(b"garbage")
    it = ds4[1]
    assert torch.equal(it["full"], first[1]["full"]) and ds4.cache_misses == 2


def test_estimated_frames_match_decoded(tiny_corpus):
    ds = SLTDataset(read_manifest(tiny_corpus / "dev.jsonl"), CFG)
    assert [estimate_frames(s, CFG) for s in ds.samples] == [ds[i]["full"].shape[0] for i in range(len(ds))]
    cfg = ClipConfig(full_size=32, hand_size=16, max_frames=20, fps=6.0)
    capped = SLTDataset(ds.samples, cfg)
    est = [estimate_frames(s, cfg) for s in ds.samples]
    assert all(e <= 20 for e in est) and est == [capped[i]["full"].shape[0] for i in range(len(ds))]
    assert estimate_frames(dataclasses.replace(ds.samples[0], video=str(tiny_corpus / "nowhere.mp4")), cfg) == 0


def test_length_sorted_batches_group_similar_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 200, size=103).tolist()
    batches = length_sorted_batches(lengths, 8)
    assert len(batches) == 13 and sorted(i for b in batches for i in b) == list(range(103))
    assert [lengths[i] for b in batches for i in b] == sorted(lengths, reverse=True)
    perm = rng.permutation(103)
    rand = [perm[i:i + 8] for i in range(0, 103, 8)]

    def waste(bs):
        return sum(max(lengths[i] for i in bt) * len(bt) - sum(lengths[i] for i in bt) for bt in bs)

    assert waste(batches) < 0.5 * waste(rand)


def test_manifest_errors_are_kept_under_skip(tmp_path, tiny_corpus):
    good = read_manifest(tiny_corpus / "train.jsonl")[0]
    good.video, good.pose = shutil.copy(good.video, tmp_path), shutil.copy(good.pose, tmp_path)
    m = tmp_path / "m.jsonl"
    write_manifest(m, [good])
    with open(m, "a") as f:
        f.write(json.dumps({"id": "up", "video": "../x.mp4", "text": "t"}) + "\n")
    ds = SLTDataset(m, CFG)
    assert len(ds) == 1 and len(ds.manifest_errors) == 1 and "m.jsonl:2" in str(ds.manifest_errors[0])
    with pytest.raises(InputError, match="leaves the manifest's folder"):
        SLTDataset(m, CFG, on_error="raise")


def test_prescan_in_worker_processes_finds_the_same_bad_samples_and_fills_the_cache(mixed, tmp_path, monkeypatch):
    """The stage-1 pre-scan spread over worker processes: same bad indices as
    the in-process scan, and the workers' loads land in the clip cache."""
    from slt_llm.data import dataset as dataset_mod

    cache = tmp_path / "cache"
    ds = SLTDataset(mixed, CFG, cache_dir=cache)
    monkeypatch.setattr(dataset_mod, "SCAN_WORKERS_MIN_SAMPLES", 0)
    assert dataset_mod.scan_unreadable(ds, range(len(ds)), num_workers=2) == [1, 3, 5]
    assert len(list(cache.rglob("*.npz"))) == 4  # the good ones, written by the workers
    fresh = SLTDataset(mixed, CFG, cache_dir=cache)
    for i in (0, 2, 4, 6):
        fresh[i]
    assert fresh.cache_hits == 4 and fresh.cache_misses == 0
    assert dataset_mod.scan_unreadable(SLTDataset(mixed, CFG), [6, 5, 0, 3], num_workers=0) == [5, 3]
