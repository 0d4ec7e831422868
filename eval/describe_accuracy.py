"""How often do the keypoint describer's handshape and movement words match the synthetic truth?

    .venv/bin/python eval/describe_accuracy.py [--samples 60] [--seed 0]

Synthetic signs (``slt_llm.synth.render``) are fixed combinations of handshape,
orientation, place, path and hands. Each sample's sentence is rendered (the
same ``render_sample`` the corpus generator uses), its keypoints go through a
``.pose`` file and ``read_pose`` like real data, and for every sign the
describer's window rules (``describe.describe_window``, the per-segment rules)
run on the frames of that sign, dominant (right) hand. Compared with the
lexicon: handshape name, movement kind + direction, finger direction and place
(the last two are reported, not targets). Which frames belong to which sign is
reported by the generator itself (``render_sample(..., spans=...)``). Last line ``RESULT handshape_acc=... movement_acc=... ...``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

# synth handshape -> the describer's name
SHAPE_WORDS = {"A": "fist", "B": "flat hand", "5": "spread hand", "1": "index finger", "V": "V hand",
               "W": "W hand", "Y": "Y hand", "L": "L hand", "I": "little finger", "horns": "horns",
               "claw": "claw", "3": "three hand"}
# synth path -> (movement kind, direction) the describer should give for the dominant hand
PATH_WORDS = {"still": ("still", ""), "tap": ("back_and_forth", "up and down"),
              "sideways": ("back_and_forth", "side to side"), "circle": ("circular", ""),
              "diagonal": ("straight", "down and outward"), "down": ("straight", "down"),
              "zigzag": ("zigzag", "outward")}
ORIENT_WORDS = {"up": "fingers pointing up", "inward": "fingers pointing across the body",
                "diag": "fingers pointing up and across the body"}


def sign_spans(signs: list, lexicon: dict, signer, size: int, rng) -> tuple:
    """Render one sentence like the corpus generator; ``(xy (T,543,2), conf (T,543),
    spans [(gloss, first, stop)])`` with each sign's frames from the generator itself."""
    from slt_llm.synth import render as synth

    spans: list = []
    _, xy, conf = synth.render_sample(signs, lexicon, signer, size, rng, spans=spans)
    return xy, conf, spans


def evaluate(n_samples: int, seed: int, size: int = 128, fps: int = 12) -> dict:
    from slt_llm.synth import corpus, render, toy
    from slt_llm.data.describe import describe_window, hand_frames
    from slt_llm.data.pose import normalize, read_pose, write_pose_holistic

    g = toy.build_grammar(None)
    lexicon = render.build_lexicon(toy.content_words(g))
    signers = render.make_signers(seed)
    sents = toy.make_sentences(g, n_samples, 0, 0, seed, 0.0)["train"]
    hits = Counter()
    total = 0
    confusion = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i, (slots, _) in enumerate(sents):
            rng = np.random.default_rng(corpus._sample_seed(seed, "train", i))
            signer = signers[int(rng.integers(len(signers)))]
            xy, conf, spans = sign_spans(toy.glosses(slots), lexicon, signer, size, rng)
            p = write_pose_holistic(Path(tmp) / f"{i}.pose", xy, conf, float(fps), size, size)
            kpn = normalize(read_pose(p))
            feat = hand_frames(kpn, "right")
            for gloss, a, b in spans:
                truth = lexicon[gloss]
                w = describe_window(feat, a, b, float(fps), "right")
                mv = w["movement"] or {"kind": "", "direction": ""}
                kind, direction = PATH_WORDS[truth["path"]]
                total += 1
                hits["handshape"] += w["shape"] == SHAPE_WORDS[truth["handshape"]]
                ok_kind = mv["kind"] == kind
                hits["movement_kind"] += ok_kind
                hits["movement"] += ok_kind and (mv["direction"] == direction or kind in ("still", "circular"))
                hits["fingers"] += w["fingers"] == ORIENT_WORDS[truth["orientation"]]
                if not ok_kind:
                    confusion[(truth["path"], mv["kind"])] += 1
                if w["shape"] != SHAPE_WORDS[truth["handshape"]]:
                    confusion[(truth["handshape"], w["shape"])] += 1
    acc = {k: hits[k] / max(total, 1) for k in ("handshape", "movement", "movement_kind", "fingers")}
    return {"signs": total, "acc": acc, "confusion": confusion.most_common(12)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    r = evaluate(a.samples, a.seed)
    print(f"{r['signs']} signs in {a.samples} synthetic sentences (seed {a.seed})")
    for k, v in r["acc"].items():
        print(f"  {k:14s} {100 * v:6.1f}%")
    print("most frequent errors (truth, described):", r["confusion"])
    acc = r["acc"]
    print(f"RESULT handshape_acc={acc['handshape']:.3f} movement_acc={acc['movement']:.3f} "
          f"movement_kind_acc={acc['movement_kind']:.3f} fingers_acc={acc['fingers']:.3f} signs={r['signs']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
