"""The canonical keypoint layout and the clip/batch contract shared by every stage.

Canonical joints (J = 53), in this order:
  0..6   body: nose, left_shoulder, right_shoulder, left_elbow, right_elbow,
         left_wrist, right_wrist
  7..10  face: left_eye, right_eye, mouth_left, mouth_right
  11..31 left hand, 21 points in MediaPipe hand order (0 wrist, 1-4 thumb,
         5-8 index, 9-12 middle, 13-16 ring, 17-20 pinky)
  32..52 right hand, same order
"Left" and "right" are the signer's, as the source layout names them.

A ``Clip`` (one sample, numpy) and a batch (collated, torch) hold:
  full       uint8   (T, 3, full_size, full_size)   whole frame, letterboxed
  left       uint8   (T, 3, hand_size, hand_size)   left-hand crop
  right      uint8   (T, 3, hand_size, hand_size)   right-hand crop
  keypoints  float32 (T, J, 3)  x, y normalised (neck at 0, shoulder width 1), confidence in [0, 1]
  boxes      float32 (T, 2, 4)  left/right hand boxes in source pixels (x0, y0, x1, y1)
  times      float32 (T,)       seconds of each sampled frame
Batches add a leading B, ``frame_mask`` bool (B, T) true on real frames,
``lengths`` long (B,), ``ids`` list[str], ``texts`` list[str], ``index`` long (B,)
(position of the sample in its dataset, used by pair selection).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BODY = ["nose", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist"]
FACE = ["left_eye", "right_eye", "mouth_left", "mouth_right"]
HAND = [
    "wrist",
    "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
    "index_mcp", "index_pip", "index_dip", "index_tip",
    "middle_mcp", "middle_pip", "middle_dip", "middle_tip",
    "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
    "pinky_mcp", "pinky_pip", "pinky_dip", "pinky_tip",
]
CANONICAL_JOINTS = BODY + FACE + ["left_" + h for h in HAND] + ["right_" + h for h in HAND]
NUM_JOINTS = len(CANONICAL_JOINTS)  # 53
LEFT_HAND = slice(len(BODY) + len(FACE), len(BODY) + len(FACE) + 21)  # 11..31
RIGHT_HAND = slice(LEFT_HAND.stop, LEFT_HAND.stop + 21)  # 32..52
J_LEFT_SHOULDER, J_RIGHT_SHOULDER = 1, 2
J_LEFT_ELBOW, J_RIGHT_ELBOW = 3, 4
J_LEFT_WRIST, J_RIGHT_WRIST = 5, 6


@dataclass
class Clip:
    full: np.ndarray
    left: np.ndarray
    right: np.ndarray
    keypoints: np.ndarray
    boxes: np.ndarray
    times: np.ndarray
    fps: float
    source: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.full.shape[0])
