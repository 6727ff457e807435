#!/usr/bin/env python
"""The live fit's closed-lip reference on any clip: contact sheet (source | diffuse render | live output) and the
drive's mouth r against the offline path's.

    python benchmarks/live_reference_check.py CLIP OUT.png [FRAMES]

The drive is the target's mouth opening before the generator (the dub mode's retargeted expression), so the
figure measures the live fit and its reference, not the generator or a re-tracking of its output.
"""

import sys

import cv2
import numpy as np

from dvp_hub import DeepVideoPortraitPipeline
from dvp_hub.face import topology as topo
from dvp_hub.face.fitting import fit_sequence
from dvp_hub.face.model import load_face_model
from dvp_hub.face.tracker import track_video
from dvp_hub.motion import retarget
from dvp_hub.video import VideoReader

clip, out_png = sys.argv[1], sys.argv[2]
N = int(sys.argv[3]) if len(sys.argv) > 3 else 300
model = load_face_model()
pipe = DeepVideoPortraitPipeline.from_pretrained("demo")
reader = VideoReader(clip, max_frames=N)
frames = [f.copy() for f in reader]
off = fit_sequence(track_video(clip, N))
src_m = topo.mouth_opening(model.shape(off.identity, off.expression))
tgt = pipe.target_state.sequence
d = retarget.dub(off, tgt, pipe.target.config.train_frames)
off_r = np.corrcoef(src_m, topo.mouth_opening(model.shape(tgt.identity, d.expression)))[0, 1]


def run():
    s = pipe.live(fps=reader.fps, mode="dub")
    drives, conds, outs = [], [], []
    orig = s._drive
    s._drive = lambda p, o=orig: drives.append(o(p)) or drives[-1]
    for f in frames:
        c = s.prepare(f)
        conds.append(c[0, :3].float().permute(1, 2, 0).numpy())
        outs.append(s.generate(c))
    m = np.array([topo.mouth_opening(model.shape(tgt.identity, x.expression))[0] for x in drives])
    k = s.calibration_frames
    return outs, conds, np.corrcoef(src_m[k:], m[k:])[0, 1]


A, C, ra = run()
print(f"{clip.split('/')[-1]}: drive mouth r live {ra:.3f}, offline path {off_r:.3f}")
idx = np.linspace(40, len(frames) - 1, 6).astype(int)
rows = []
for i in idx:
    src = cv2.resize(frames[i], (256, 256))
    cond = ((C[i] + 1) * 127.5).clip(0, 255).astype(np.uint8)
    rows.append(np.concatenate([src, cond, A[i]], 1))
cv2.imwrite(out_png, cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))
