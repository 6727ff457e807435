"""Paste-back (`render.composite.Compositor`) on the demo's own generated crop and its reference frame."""

import cv2
import numpy as np

from dvp_hub import DeepVideoPortraitPipeline
from dvp_hub.render.composite import TORSO_RAMP, Compositor, ScaledResize, Torso


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


def test_below_the_rendered_jaw_the_reference_torso_is_kept():
    import torch

    from dvp_hub.pipelines.finish import JAW_FLOOR, LIFT_TAPER, jaw_line, rendered_face, torso_line

    # a rendered face: an ellipse whose lowest pixel (the chin) is row 40 of 64 at column 32
    yy, xx = np.mgrid[:64, :64]
    face = ((yy - 25) / 15) ** 2 + ((xx - 32) / 12) ** 2 <= 1
    cond = -torch.ones(9, 64, 64)
    cond[3:6, torch.from_numpy(face)] = 0.5
    assert np.array_equal(rendered_face(cond), face)
    jaw = jaw_line(rendered_face(cond), 128)  # at twice the size
    assert jaw.shape == (128,) and abs(jaw[64] - 82) <= 1  # just under the chin: row 41 of 64, row 82 of 128
    floor = 2 * (41 - JAW_FLOOR * 31)  # the face spans rows 10-40
    assert jaw[56] < jaw[64] and abs(jaw.min() - floor) < 1e-3 and jaw[0] == jaw.min()  # the jaw curves up to it
    assert jaw_line(rendered_face(-torch.ones(9, 64, 64)), 128) is None  # no face, no line
    torso = torso_line(rendered_face(cond), 128, jaw + 10)  # the reference's jaw 10 px lower
    assert np.array_equal(torso.jaw[40:90], jaw[40:90]) and torso.lift[64] == 10  # under the face (columns 40-89)
    assert torso.lift[0] == 0 and torso.jaw[0] == jaw[0] + 10  # far beside it: no lift, cut at the lower jaw
    taper = 1 - (40 - 36.5) / (LIFT_TAPER * 128)  # column 36, beside the face: part of the lift
    assert abs(torso.lift[36] - 10 * taper) < 1e-4 and abs(torso.jaw[36] - (jaw[36] + 10 - 10 * taper)) < 1e-4
    lower = torso_line(rendered_face(cond), 128, jaw - 10)  # the reference's jaw higher: nothing to lift
    assert lower.lift.max() == 0 and np.array_equal(lower.jaw, jaw)

    pipe = DeepVideoPortraitPipeline.from_pretrained("demo")
    crop = pipe.edit(100, watermark=False, paste_back=False)
    background, size = pipe.background(), crop.shape[0]
    comp = Compositor(background, pipe.target.crop, size, smooth=0)
    line = np.full(size, size / 2, np.float32)  # a jaw across the middle of the crop
    generated, guarded = comp(crop), comp(crop, Torso(line))
    c = pipe.target.crop
    scale = c.size / size
    below = int(np.ceil(c.y0 + (size / 2 + TORSO_RAMP * size + 2) * scale))  # past the ramp, in frame rows
    above = int(c.y0 + (size / 2 - 4) * scale)
    x0, x1 = int(c.x0 + 0.3 * c.size), int(c.x0 + 0.7 * c.size)  # the middle of the crop: the person
    assert np.array_equal(
        guarded[below : int(c.y0 + c.size) - 2, x0:x1], background[below : int(c.y0 + c.size) - 2, x0:x1]
    )
    assert np.abs(generated[below:, x0:x1].astype(int) - background[below:, x0:x1]).mean() > 1  # it did change
    assert np.array_equal(guarded[:above], generated[:above])  # above the jaw, the generated crop as before
    comp.close()


def test_a_raised_jaw_stretches_the_reference_neck_up_to_it():
    from dvp_hub.render.composite import NECK_SPAN

    pipe = DeepVideoPortraitPipeline.from_pretrained("demo")
    crop = pipe.edit(100, watermark=False, paste_back=False)
    background, size, c = pipe.background(), crop.shape[0], pipe.target.crop
    comp = Compositor(background, c, size, smooth=0)
    jaw, lift = np.full(size, size / 2, np.float32), np.zeros(size, np.float32)
    lift[size // 4 : 3 * size // 4] = size / 16  # the face's columns: a jaw size/16 above the reference's
    flat, lifted = comp(crop, Torso(jaw)), comp(crop, Torso(jaw, lift))
    scale = c.size / size
    xs = slice(int(c.x0 + 0.4 * c.size), int(c.x0 + 0.6 * c.size))  # inside the lifted columns
    below = TORSO_RAMP * size + 2  # crop rows under the jaw: just past the ramp
    row = round(c.y0 + (size / 2 + below) * scale)
    # the reference's rows further down are shown there (its neck, pulled up): the full lift at the jaw, easing to
    # none NECK_SPAN of the crop under the reference's own jaw
    shift = size / 16 * (1 - below / (size / 16 + NECK_SPAN * size)) * scale  # frame pixels
    moved = [np.abs(lifted[row, xs].astype(int) - background[row + d, xs]).mean() for d in range(40)]
    assert abs(np.argmin(moved) - shift) <= 1.5 and min(moved) < 3
    far = int(np.ceil(c.y0 + (size / 2 + size / 16 + NECK_SPAN * size) * scale)) + 2  # past the stretch
    assert np.array_equal(lifted[far:], flat[far:])
    outside = int(c.x0 + 0.05 * c.size)  # a column with no lift: as without it
    assert np.array_equal(lifted[:, :outside], flat[:, :outside])
    top = int(c.y0 + (size / 2 - NECK_SPAN * size) * scale) - 1  # above the stretch
    assert np.array_equal(lifted[:top], flat[:top])
    assert np.array_equal(comp(crop, Torso(jaw, np.zeros(size, np.float32))), flat)  # no lift, no change
    comp.close()


def test_a_lift_reaching_past_the_crop_eases_out_inside_it():
    from dvp_hub.render.crop import Crop

    h, w, size = 400, 300, 128
    background = np.repeat(np.repeat((np.arange(h) % 250).astype(np.uint8)[:, None], w, 1)[..., None], 3, 2)
    crop = Crop(50.0, 100.0, 200.0)  # rows 100-300 of a frame whose rows each hold their own grey level
    comp = Compositor(background, crop, size, person_mask=False, smooth=0)
    black, lift = np.zeros((size, size, 3), np.uint8), np.full(size, size / 16, np.float32)
    out = comp(black, Torso(np.full(size, 0.9 * size, np.float32), lift))  # the stretch runs past the crop
    column = out[:, 150, 0].astype(int)
    assert np.array_equal(column[300:], background[300:, 150, 0])  # below the crop: untouched
    assert column[299] == background[299, 150, 0]  # the crop's last row: no shift, so no step to the row below it
    kept = column[287:300]  # past the ramp under the jaw (row 280): the reference only, its rows pulled up
    assert (np.diff(kept) >= 0).all() and len(np.unique(kept)) >= 5  # ascending, not one repeated edge row
    assert comp(black, Torso(np.full(size, 2.0 * size, np.float32), lift)).shape == background.shape  # no band
    comp.close()


def test_the_person_is_segmented_every_other_frame_and_after_a_reset():
    from dvp_hub.render.composite import CLIP_SEGMENT_EVERY

    pipe = DeepVideoPortraitPipeline.from_pretrained("demo")
    crop = pipe.edit(100, watermark=False, paste_back=False)
    comp = Compositor(pipe.background(), pipe.target.crop, crop.shape[0], every=CLIP_SEGMENT_EVERY)
    frames = [np.roll(crop, 3 * k, axis=1) for k in range(5)]  # a moving person
    seen, segmenter = [], comp.segmenter
    comp.segmenter = lambda image: (
        seen.append(next(k for k, f in enumerate(frames) if np.array_equal(f, image))) or (segmenter(image))
    )
    out = [comp(f) for f in frames]
    assert CLIP_SEGMENT_EVERY == 2 and seen == [0, 2, 4]  # frames 1 and 3 reuse the segmentation before them
    comp.reset()
    again = comp(frames[1])
    assert seen == [0, 2, 4, 1]  # a new clip starts with its own segmentation
    assert np.abs(again.astype(int) - out[1]).max() > 0  # frame 1 alone: its own mask, no smoothing with frame 0
    segmenter.close()


def test_a_scaled_resize_lands_where_the_affine_warp_does():
    """`ScaledResize` (paste-back's mask into the frame) against `cv2.warpAffine` of the same map, for upscales and
    offsets of either sign, regions reaching past the mask: within 1/50 source pixel, so a smooth mask differs by far less than a grey level; a scale
    that offers few offsets (1/2) takes the warp itself."""
    rng = np.random.default_rng(0)
    mask = cv2.GaussianBlur(rng.random((128, 128)).astype(np.float32), (0, 0), 4)
    slope = np.abs(np.diff(mask, axis=1)).max()  # the largest change a source pixel's shift makes
    for scale, offset, size in (
        (128 / 462.6, (0.37, 0.21), (463, 463)),
        (0.5, (-3.2, 5.9), (300, 250)),
        (0.7123, (0, 0), (140, 120)),
        (0.2513, (3.7, 2.2), (463, 463)),  # a crop clipped at the frame's edge: the region starts inside the mask
        (0.51, (0, 0), (400, 400)),  # the region reaches past the mask's far edge (replicated)
    ):
        m = np.float32([[scale, 0, offset[0]], [0, scale, offset[1]]])
        warped = cv2.warpAffine(
            mask, m, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
        )
        resize = ScaledResize(scale, offset, size)
        out = resize(mask)
        assert resize.resizes == (scale != 0.5)
        assert out.shape == warped.shape
        assert np.abs(out - warped).max() <= slope / 20  # the warp itself rounds positions to 1/32 px
