"""Paste-back (`render.composite.Compositor`) on the demo's own generated crop and its reference frame."""

import numpy as np

from dvp_hub import DeepVideoPortraitPipeline
from dvp_hub.render.composite import Compositor


def test_paste_back_keeps_the_background_and_undoes_a_colour_cast():
    pipe = DeepVideoPortraitPipeline.from_pretrained("demo")
    crop = pipe.edit(100, watermark=False, paste_back=False)
    background = pipe.background()
    comp = Compositor(background, pipe.target.crop, crop.shape[0], smooth=0)
    out = comp(crop)
    assert out.shape == background.shape and out.dtype == np.uint8
    x0, y0, x1, y1 = comp.roi
    outside = np.ones(background.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(out[outside], background[outside])  # nothing changes outside the crop's square
    inside = out[y0:y1, x0:x1].astype(int) - background[y0:y1, x0:x1]
    assert np.abs(inside).mean() > 2  # the generated person is there
    # A cast on the whole generated crop (as a generator's drift would make) is measured on the background just
    # outside the person and taken back: the pasted person keeps the frame's tone.
    cast = np.clip(crop.astype(int) + [10, -6, 4], 0, 255).astype(np.uint8)
    assert np.abs(comp(cast).astype(int) - out).reshape(-1, 3).mean(0).max() < 0.5  # of up to 10 grey levels
    comp.close()
