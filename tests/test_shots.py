"""Real footage before training: cuts and splices, black bars, crops that leave the picture."""

import json

import numpy as np
import pytest

from dvp_hub.render.crop import Crop
from dvp_hub.shots import FrameProbe, find_cuts, split_shots

from .conftest import clip


def _face_track(n, jumps=(), zoom_at=None):
    """Landmarks of a face drifting slowly, with one-frame jumps (cuts) and a zoom change."""
    rng = np.random.default_rng(0)
    base = rng.normal(0, 30, (478, 2)) + 240
    lm = np.repeat(base[None], n, 0) + np.linspace(0, 20, n)[:, None, None]  # slow drift
    lm += rng.normal(0, 0.3, lm.shape)
    for t in jumps:
        lm[t:] += 25.0
    if zoom_at is not None:
        c = lm[zoom_at:].mean(1, keepdims=True)
        lm[zoom_at:] = c + (lm[zoom_at:] - c) * 1.15
    return lm.astype(np.float32)


def test_cuts_are_isolated_jumps_of_picture_and_face():
    n = 200
    changes = np.full(n, 1.0) + np.random.default_rng(1).uniform(0, 0.3, n)
    changes[0] = 0
    changes[60] = 12.0  # a splice: picture and face jump together
    changes[150] = 9.0  # a zoom change
    changes[100:106] = 8.0  # fast motion over several frames: not a cut
    lm = _face_track(n, jumps=[60], zoom_at=150)
    lm[100:106] += np.arange(6)[:, None, None] * 4.0  # the face moves with the fast motion
    assert find_cuts(changes, lm) == [60, 150]
    shots = split_shots(n, [60, 150])
    assert shots.shots == ((0, 60), (60, 150), (150, 200)) and (shots.start, shots.stop) == (60, 150)
    assert shots.dropped() == [[0, 60], [150, 200]]
    assert split_shots(n, [60, 150], keep=2).start == 150
    with pytest.raises(ValueError, match="3 shot"):
        split_shots(n, [60, 150], keep=5)
    # a picture jump without a face jump (a light switched on) is no cut; a new scene is
    changes2 = changes.copy()
    changes2[60] = 1.0
    changes2[30] = 12.0
    assert find_cuts(changes2, _face_track(n, zoom_at=150)) == [150]
    changes2[30] = 60.0
    assert find_cuts(changes2, _face_track(n, zoom_at=150)) == [30, 150]


def test_probe_finds_black_bars():
    frames = [np.zeros((90, 160, 3), np.uint8) for _ in range(3)]
    for i, f in enumerate(frames):
        f[5:85, 20:140] = 40 + 30 * i  # picture inside a 20 px pillarbox and a 5 px letterbox
    probe = FrameProbe(frames)
    assert len(list(probe)) == 3
    assert probe.picture_box() == (20, 5, 140, 85)
    assert probe.changes[0] == 0 and probe.changes[1] > 0


def test_crop_stays_in_the_picture_and_pads_only_when_it_must():
    face = np.stack(np.meshgrid(np.linspace(600, 700, 10), np.linspace(200, 330, 10)), -1).reshape(1, -1, 2)
    lm = np.repeat(face, 5, 0)
    crop = Crop.for_landmarks(lm, 1280, 720, box=(100, 30, 1180, 690))
    assert crop.x0 >= 100 and crop.y0 >= 30 and crop.x0 + crop.size <= 1180 and crop.y0 + crop.size <= 690
    assert crop.padding((100, 30, 1180, 690)) == {"left": 0.0, "top": 0.0, "right": 0.0, "bottom": 0.0}
    # a tight 256 px frame: the face needs more than the picture, the square covers it all and pads
    big = np.stack(np.meshgrid(np.linspace(60, 200, 10), np.linspace(5, 205, 10)), -1).reshape(1, -1, 2)
    tight = Crop.for_landmarks(np.repeat(big, 5, 0), 256, 256)  # a 200 px face touching the top
    pad = tight.padding((0, 0, 256, 256))
    assert tight.size > 256 and sum(pad.values()) > 0
    assert tight.x0 <= 0 and tight.y0 <= 0 and tight.x0 + tight.size >= 256 and tight.y0 + tight.size >= 256
    img = tight.apply(np.full((256, 256, 3), 200, np.uint8), 64)
    assert img.shape == (64, 64, 3) and img.min() == 0 and img.max() == 200  # padded black, picture kept


@pytest.mark.slow
def test_prepare_keeps_the_longest_shot_of_a_spliced_clip(tmp_path):
    """target-anchor-71s holds jump cuts: the dataset is one continuous shot and says what it dropped."""
    from dvp_hub.dataset import prepare_target_dataset

    meta = prepare_target_dataset(clip("target-anchor-71s.mp4"), str(tmp_path / "a"), resolution=64)
    shot = meta["shot"]
    assert 176 in shot["cuts"] and 1429 in shot["cuts"]  # the zoom-change splices, among the jumps
    start, stop = shot["kept"]
    assert meta["num_frames"] == stop - start == max(b - a for a, b in shot["shots"])
    assert shot["dropped"] and meta["source"] == "target-anchor-71s.mp4" and meta["source_frames"] == 1779
    assert meta["source_bytes"] > 1_000_000 and len(list((tmp_path / "a" / "frames").iterdir())) == stop - start
    assert json.loads((tmp_path / "a" / "dataset.json").read_text())["shot"] == shot


@pytest.mark.slow
def test_prepare_pillarboxed_and_tight_clips(tmp_path):
    from dvp_hub.dataset import prepare_target_dataset

    obama = prepare_target_dataset(clip("target-obama-34s.mp4"), str(tmp_path / "o"), resolution=64, max_frames=60)
    x0, y0, x1, y1 = obama["picture_box"]
    assert x0 > 20 and x1 < 1260  # the pillarbox bars are found
    cx, cy, size = obama["crop"]
    assert cx >= x0 and cy >= y0 and cx + size <= x1 and cy + size <= y1 and not any(obama["padding"].values())
    tight = prepare_target_dataset(
        clip("target-obama-34s.mp4"), str(tmp_path / "t"), resolution=64, max_frames=60, crop_scale=1.8
    )
    assert tight["crop_scale"] == 1.8 and obama["crop_scale"] == 2.6
    assert tight["crop"][2] < 0.85 * size  # head and shoulders: a tighter square around the same face
    tx, ty, ts = tight["crop"]
    assert tx < cx + size and ty < cy + size and tx + ts > cx and ty + ts > cy
    lieu = prepare_target_dataset(clip("target-lieu-60s.mp4"), str(tmp_path / "l"), resolution=64, max_frames=60)
    assert lieu["crop"][2] > 256 and any(lieu["padding"].values())  # padded, not crashed
    assert lieu["shot"]["cuts"] == [] and lieu["fps"] == 25


def test_prepare_rejects_a_crop_scale_out_of_range(tmp_path):
    from dvp_hub.dataset import prepare_target_dataset
    from dvp_hub.errors import DVPError

    with pytest.raises(DVPError, match="crop_scale"):
        prepare_target_dataset(clip("target-obama-34s.mp4"), str(tmp_path / "x"), crop_scale=0.5)
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()
