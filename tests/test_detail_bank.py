"""The detail bank: built, saved and loaded; on generated held-out frames of the demo it adds the real detail (the
real band's error falls, where sharpening raises it); the pipeline carries it."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from dvp_hub import DeepVideoPortraitPipeline, detail
from dvp_hub.detail_bank import BANK_IMAGE, BANK_INFO, DetailBank, DetailTransfer, farthest_picks, region_weight
from dvp_hub.errors import DVPError
from dvp_hub.evaluate import held_out_outputs
from dvp_hub.pipelines.finish import FrameFinisher, rendered_face
from dvp_hub.render.conditioning import CORRESPONDENCE
from dvp_hub.render.regions import feature_mask
from dvp_hub.video import VideoReader

from .conftest import clip


@pytest.fixture(scope="module")
def demo():
    return DeepVideoPortraitPipeline.from_pretrained("demo")


def test_farthest_picks_keep_the_outliers_and_no_repeats():
    rng = np.random.default_rng(0)
    thumbs = rng.normal(0, 1, (50, 16)).astype(np.float32)
    thumbs[17] += 40  # far from every other
    picks = farthest_picks(thumbs, 5)
    assert len(set(picks.tolist())) == 5 and 17 in picks and (np.diff(picks) > 0).all()
    assert len(farthest_picks(thumbs, 80)) == 50


def test_bank_round_trip_and_damage(tmp_path):
    rng = np.random.default_rng(1)
    crops = [rng.integers(0, 256, (96, 96, 3), dtype=np.uint8) for _ in range(12)]
    bank = DetailBank.build(crops, (8, 16, 72, 88), 96, n=7)
    assert bank.windows.shape == (7, 72, 64) and bank.window == (8, 16, 72, 88)
    bank.save(str(tmp_path))
    back = DetailBank.load(str(tmp_path))
    assert back.windows.shape == bank.windows.shape and back.window == bank.window and back.size == 96
    smooth = [cv2.GaussianBlur(w, (0, 0), 2) for w in (bank.windows, back.windows)]
    assert np.abs(smooth[0].astype(int) - smooth[1].astype(int)).mean() < 4  # JPEG: close, not equal
    assert DetailBank.load(str(tmp_path / "none")) is None  # a folder without a bank: None
    with open(tmp_path / BANK_INFO, "w") as f:
        f.write('{"frames": 7, "columns": 7, "window": [0, 0, 900, 900], "size": 96}')
    with pytest.raises(DVPError, match="damaged detail bank"):
        DetailBank.load(str(tmp_path))
    (tmp_path / BANK_IMAGE).write_bytes(b"not a jpeg")
    with pytest.raises(DVPError, match="damaged detail bank"):
        DetailBank.load(str(tmp_path))


def test_transfer_brings_real_detail_to_generated_held_out_frames(demo):
    """The demo's own held-out frames (never trained on, never in its bank), generated from their fitted parameters
    and refined: with the bank, the error of their mid band against the real frames' falls; the same refined crops
    sharpened (an unsharp mask) score worse than without. So what the bank adds is the right detail, not contrast.
    Outside the bank's window nothing changes."""
    bank, crop, cfg = demo.detail_bank, demo.target.crop, demo.target.config
    start, n, window = int(cfg.train_frames), 24, demo.generator.config.temporal_window
    cond, raw = held_out_outputs(demo, demo.target.to_sequence(), start, start + n)
    cond = cond[window - 1 :]
    offset = demo.target.source_start
    reader = VideoReader(clip("target-obama-34s.mp4"), max_frames=offset + start + n)
    real = [crop.apply(f, bank.size) for i, f in enumerate(reader) if i >= offset + start]
    finisher = FrameFinisher(demo, False, watermark=False, invisible_watermark=False)
    with_bank = finisher.crops(raw, cond)
    finisher.details = None
    without = finisher.crops(raw, cond)
    x0, y0, x1, y1 = bank.window
    outside = np.ones(bank.size, bool)[:, None] & np.ones(bank.size, bool)[None]
    outside[y0:y1, x0:x1] = False
    assert (with_bank[:, outside] == without[:, outside]).all()
    for i in range(0, n, 6):  # the mouth and eyes are found, and left as generated; nothing changes at weight 0
        face = rendered_face(cond[i])
        keep = feature_mask(cond[i, CORRESPONDENCE], face)
        weight = region_weight(face, keep, bank.size)
        kept = cv2.resize(keep.astype(np.uint8), (bank.size,) * 2, interpolation=cv2.INTER_NEAREST)
        inner = cv2.erode(kept, np.ones((9, 9), np.uint8))  # 4 px in from the feathered edge
        assert inner.sum() > 2000 and weight[inner > 0].max() < 0.05 and weight[kept > 0].max() < 0.3
        assert (with_bank[i][weight == 0] == without[i][weight == 0]).all()
    sharpened = [cv2.addWeighted(c, 1.5, cv2.GaussianBlur(c, (0, 0), 2.5), -0.5, 0) for c in without]
    scale = bank.size / crop.size
    boxes = [detail_box(lm, crop, scale) for lm in demo.target.to_sequence().landmarks[start : start + n]]

    def band_error(crops):
        return float(np.mean([detail.band_error(c, r, b) for c, r, b in zip(crops, real, boxes)]))

    assert band_error(with_bank) < 0.96 * band_error(without) < 0.96 * band_error(sharpened)
    finisher.details = Unaligned(bank)  # the first bank frame, not moved: picking and aligning are what pays
    assert band_error(with_bank) < 0.96 * band_error(finisher.crops(raw, cond))


class Unaligned(DetailTransfer):
    """`DetailTransfer` without its two steps: the bank's first frame every time, laid on as it is."""

    def __init__(self, bank):
        super().__init__(bank)
        self.flow = self

    def _pick(self, grey) -> int:
        return 0

    def calc(self, a, b, _):
        return np.zeros((*a.shape, 2), np.float32)


def detail_box(landmarks: np.ndarray, crop, scale: float) -> np.ndarray:
    """A frame's face box in the crop's pixels at ``scale`` times the crop's native size."""
    xy = (landmarks - np.array([crop.x0, crop.y0])) * scale
    return np.concatenate([xy.min(0), xy.max(0)])


def test_pipeline_carries_the_bank(demo, tmp_path):
    assert demo.detail_bank is not None and demo.detail_bank.size == 512
    assert FrameFinisher(demo, False, watermark=False, invisible_watermark=False).details is not None
    assert FrameFinisher(demo, False, refine=False).details is None  # made for the refined crop only
    bank, demo.detail_bank = demo.detail_bank, DetailBank(demo.detail_bank.windows[:, :64, :64], (0, 0, 64, 64), 256)
    try:  # a bank made for another refined size is not used, and the user is told
        with pytest.warns(UserWarning, match="detail bank is for 256 px crops"):
            assert FrameFinisher(demo, False, watermark=False, invisible_watermark=False).details is None
    finally:
        demo.detail_bank = bank
    demo.save_pretrained(str(tmp_path / "copy"))
    assert {BANK_IMAGE, BANK_INFO} <= set(os.listdir(tmp_path / "copy"))
    shipped = os.path.join(demo.detail_bank.folder, BANK_IMAGE)
    assert (tmp_path / "copy" / BANK_IMAGE).read_bytes() == Path(shipped).read_bytes()  # copied, not re-encoded
    again = DeepVideoPortraitPipeline.from_pretrained(str(tmp_path / "copy"))
    assert again.detail_bank.windows.shape == demo.detail_bank.windows.shape


def test_bank_tiles_over_rows_and_a_mismatched_sheet(tmp_path):
    rng = np.random.default_rng(2)
    crops = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(30)]
    bank = DetailBank.build(crops, (8, 8, 40, 48), 64, n=23)  # three rows of ten tiles
    bank.save(str(tmp_path))
    back = DetailBank.load(str(tmp_path))
    assert back.windows.shape == (23, 40, 32)
    assert np.abs(back.windows.astype(int) - bank.windows.astype(int)).mean() < 12  # each tile in its place
    with open(tmp_path / BANK_INFO, "w") as f:  # the JSON of another build: tiles of another size
        f.write('{"frames": 23, "columns": 10, "window": [8, 8, 36, 44], "size": 64}')
    with pytest.raises(DVPError, match="damaged detail bank"):
        DetailBank.load(str(tmp_path))


def test_transfer_keeps_its_pick_until_another_is_clearly_closer():
    rng = np.random.default_rng(3)
    windows = rng.integers(0, 256, (3, 48, 48), dtype=np.uint8)
    transfer = DetailTransfer(DetailBank(windows, (0, 0, 48, 48), 48))
    assert transfer._pick(windows[1]) == 1
    near_1 = (0.9 * windows[1].astype(np.float32) + 0.1 * windows[2]).astype(np.uint8)
    assert transfer._pick(near_1) == 1
    closer_to_2 = (0.49 * windows[1].astype(np.float32) + 0.51 * windows[2]).astype(np.uint8)
    assert transfer._pick(closer_to_2) == 1  # closer to 2, but not clearly: the grain does not flip
    assert transfer._pick(windows[2]) == 2
    transfer.reset()
    assert transfer._pick(closer_to_2) == 2


def test_a_target_without_a_refiner_gets_the_enlarged_crop_and_the_detail():
    """Targets from `dvp train` have no refiner: their crop is enlarged to the bank's size and takes its detail; on
    generated held-out frames of the demo (its refiner removed) the band error falls below the plain enlargement's,
    where sharpening the enlargement raises it."""
    pipe = DeepVideoPortraitPipeline.from_pretrained("demo")
    pipe.register_modules(refiner=None)
    cfg, crop, bank = pipe.target.config, pipe.target.crop, pipe.detail_bank
    start, n, window = int(cfg.train_frames), 24, pipe.generator.config.temporal_window
    cond, raw = held_out_outputs(pipe, pipe.target.to_sequence(), start, start + n)
    cond = cond[window - 1 :]
    finisher = FrameFinisher(pipe, False, watermark=False, invisible_watermark=False)
    assert finisher.crop_size == bank.size == 2 * cfg.resolution
    with_bank = finisher.crops(raw, cond)
    finisher.details = None
    enlarged = finisher.crops(raw, cond)
    assert enlarged.shape == with_bank.shape == (n, bank.size, bank.size, 3)
    offset = pipe.target.source_start
    reader = VideoReader(clip("target-obama-34s.mp4"), max_frames=offset + start + n)
    real = [crop.apply(f, bank.size) for i, f in enumerate(reader) if i >= offset + start]
    scale = bank.size / crop.size
    boxes = [detail_box(lm, crop, scale) for lm in pipe.target.to_sequence().landmarks[start : start + n]]
    sharpened = [cv2.addWeighted(c, 1.5, cv2.GaussianBlur(c, (0, 0), 2.5), -0.5, 0) for c in enlarged]

    def band_error(crops):
        return float(np.mean([detail.band_error(c, r, b) for c, r, b in zip(crops, real, boxes)]))

    assert band_error(with_bank) < 0.99 * band_error(enlarged) < 0.99 * band_error(sharpened)
