"""Provenance: the invisible watermark, Content Credentials (C2PA) and `dvp verify`."""

import os
import subprocess
import sys

import imageio_ffmpeg
import numpy as np
import pytest

from dvp_hub.provenance import watermark as wm
from dvp_hub.provenance.credentials import read_credentials
from dvp_hub.video import VideoReader, VideoWriter, write_video

from .conftest import clip

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
SIZE = 256  # per-frame detection needs about 192 px and more (the tile is 128 px); see the README's table


@pytest.fixture(autouse=True)
def _config(tmp_path_factory, monkeypatch):
    """The local signing pair goes to a temporary config folder, never the user's."""
    monkeypatch.setenv("DVP_CONFIG_DIR", str(tmp_path_factory.getbasetemp() / "dvp-config"))


@pytest.fixture(scope="module")
def frames():
    return [f.copy() for f in VideoReader(clip("talking-d3.mp4"), max_frames=20, size=(SIZE, SIZE))]


def _ffmpeg(src, dst, *args):
    subprocess.run([FFMPEG, "-v", "error", "-y", "-i", str(src), *args, str(dst)], check=True)


def test_embedding_costs_little_and_round_trips_in_memory(frames):
    f = frames[0]
    marked = wm.embed(f)
    psnr = 10 * np.log10(255**2 / np.mean((marked.astype(float) - f) ** 2))
    assert psnr > 40
    d = wm.detect(marked)
    assert d.detected and d.payload == "dvp_hub/1"
    assert not wm.detect(f).detected


def test_windows_marked_apart_join_into_the_whole_frame_s_mark(frames):
    f = np.concatenate([frames[0], frames[1]], 1)  # 512 x 256: windows that cut the 128 px tile anywhere
    h, w = f.shape[:2]
    joined = f.copy()
    for x0, y0, x1, y1 in ((0, 0, 203, 97), (203, 0, w, 97), (0, 97, 371, h), (371, 97, w, h)):
        joined[y0:y1, x0:x1] = wm.embed(f[y0:y1, x0:x1], within=(x0, y0, w, h))
    assert np.array_equal(joined, wm.embed(f))
    with pytest.raises(ValueError, match="does not fit"):
        wm.embed(f[:, :300], within=(300, 0, w, h))


def test_a_pasted_frame_marked_in_its_region_is_the_frame_marked_whole():
    """The finisher marks only the crop's region of a pasted frame and copies the rest from the reference frame
    marked once; where the visible label falls inside the region, it marks the whole frame. Two finished frames differ
    only inside its `changed_region` (what the video writer is told to convert again), which is None once the frames
    are marked whole."""
    from dvp_hub import DeepVideoPortraitPipeline
    from dvp_hub.pipelines.finish import FrameFinisher
    from dvp_hub.provenance.label import mark_synthetic

    pipe = DeepVideoPortraitPipeline.from_pretrained("demo")
    finisher = FrameFinisher(pipe, True, refine=False)
    try:
        crop = np.random.default_rng(0).integers(0, 256, (finisher.crop_size,) * 2 + (3,), dtype=np.uint8)
        pasted = finisher.compositor(crop)
        whole = wm.embed(mark_synthetic(pasted))
        assert np.array_equal(finisher.mark(pasted, pasted=True), whole)
        assert finisher._marked_background is not None and finisher._marked_background is not False
        x0, y0, x1, y1 = finisher.changed_region
        other = finisher.frame(255 - crop)
        differs = np.argwhere((finisher.frame(crop) != other).any(2))
        assert differs.size and (differs.min(0) >= (y0, x0)).all() and (differs.max(0) < (y1, x1)).all()
        finisher._marked_background = None
        h, w = pasted.shape[:2]
        finisher.compositor.roi = (0, 0, w, h)  # the label inside the region: marked whole
        assert np.array_equal(finisher.mark(pasted, pasted=True), whole)
        assert finisher._marked_background is False and finisher.changed_region is None
    finally:
        finisher.close()


def test_survives_the_project_encoder_a_low_quality_re_encode_and_a_corner_crop(frames, tmp_path):
    out = tmp_path / "marked.mp4"
    write_video([wm.embed(f) for f in frames], out, 30, synthetic=False)
    own = [wm.detect(f) for f in VideoReader(out)]
    assert np.mean([d.detected for d in own]) >= 0.9
    crop = tmp_path / "crop.mp4"
    _ffmpeg(out, crop, "-vf", "crop=iw*3/4:ih*3/4:0:0", "-crf", "23")  # the label's corner is gone
    assert np.mean([wm.detect(f).detected for f in VideoReader(crop)]) >= 0.5
    assert wm.detect_clip(list(VideoReader(crop))).detected
    low = tmp_path / "crf32.mp4"
    _ffmpeg(out, low, "-crf", "32")
    assert wm.detect_clip(list(VideoReader(low))).detected
    half = tmp_path / "half.mp4"
    _ffmpeg(out, half, "-vf", "scale=iw/2:ih/2")
    assert wm.detect_clip(list(VideoReader(half))).detected


def test_clean_shared_clips_are_not_detected():
    for name in ("talking-d3.mp4", "speech-wda.mp4", "target-obama-34s.mp4"):
        reader = VideoReader(clip(name), max_frames=60)
        sampled = [f.copy() for i, f in enumerate(reader) if i % 4 == 0]
        assert not any(wm.detect(f).detected for f in sampled), name
        assert not wm.detect_clip(sampled).detected, name


def test_c2pa_manifest_written_read_back_and_corruption_reported(frames, tmp_path):
    out = tmp_path / "gen.mp4"
    with VideoWriter(
        out, 30, provenance={"target": "tiny", "model_card": "x/README.md", "source": "/a/b/me.mp4"}
    ) as w:
        for f in frames[:6]:
            w.write(f)
    c = read_credentials(str(out))
    assert c["present"] and c["valid"] and not c["trusted"]  # the local CA proves integrity, not identity
    assert c["generator"].startswith("dvp_hub") and c["digital_source_type"] == "trainedAlgorithmicMedia"
    assert c["target"] == "tiny"
    import c2pa

    data = c2pa.Reader(str(out)).get_active_manifest()
    ours = [a for a in data["assertions"] if a["label"] == "org.dvp_hub.reenactment"][0]["data"]
    assert ours["source_name_sha256"] == __import__("hashlib").sha256(b"me.mp4").hexdigest()
    assert "/a/b" not in str(data)  # the source's name is hashed, its path never written
    # the key of the local pair is the owner's only
    key = os.path.join(os.environ["DVP_CONFIG_DIR"], "c2pa", "signer-key.pem")
    assert os.stat(key).st_mode & 0o077 == 0
    # the picture changed after signing: invalid, reported, not a crash
    raw = bytearray(out.read_bytes())
    i = raw.rfind(b"mdat") + 2000
    raw[i : i + 64] = bytes(64)
    bad = tmp_path / "tampered.mp4"
    bad.write_bytes(bytes(raw))
    c = read_credentials(str(bad))
    assert c["present"] and not c["valid"]
    # the manifest itself damaged
    raw = bytearray(out.read_bytes())
    j = raw.find(b"c2pa.signature")
    raw[j : j + 40] = b"\xff" * 40
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(raw))
    c = read_credentials(str(broken))
    assert c["present"] and not c["valid"]


def test_failed_signing_keeps_the_video_and_says_why_in_one_line(frames, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("DVP_C2PA_CERT", str(tmp_path / "missing.pem"))
    monkeypatch.setenv("DVP_C2PA_KEY", str(tmp_path / "missing.key"))
    out = tmp_path / "unsigned.mp4"
    with caplog.at_level("WARNING", logger="dvp_hub.provenance"):
        write_video(frames[:4], out, 30)
    assert out.exists() and VideoReader(out).info.num_frames == 4
    assert not read_credentials(str(out))["present"]
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 1 and "without Content Credentials" in msgs[0] and "\n" not in msgs[0]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def _verify(path):
    return subprocess.run([sys.executable, "-m", "dvp_hub.cli", "verify", str(path)], capture_output=True, text=True)


def test_dvp_verify_exit_codes_and_report(tiny_pipeline, tmp_path):
    out = tmp_path / "reenacted.mp4"
    tiny_pipeline(source_video=clip("talking-d3.mp4"), max_frames=12, output_video=str(out), progress=False)
    r = _verify(out)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "MARKED AS SYNTHETIC" in r.stdout and "trainedAlgorithmicMedia" in r.stdout
    r = _verify(clip("talking-d3.mp4"))
    assert r.returncode == 1 and "no dvp_hub mark found" in r.stdout
    bad = tmp_path / "x.mp4"
    bad.write_text("not a video")
    r = _verify(bad)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    # an edited frame saved as an image: the watermark and the label are still there
    from PIL import Image

    img = tmp_path / "edit.png"
    Image.fromarray(tiny_pipeline.edit(3, yaw=5)).save(img)
    r = _verify(img)
    assert r.returncode == 0 and "visible label:              present" in r.stdout


def test_a_demo_video_cropped_and_re_encoded_is_still_recognised_by_its_watermark(tmp_path):
    out = tmp_path / "demo.mp4"
    r = subprocess.run(
        [sys.executable, "-m", "dvp_hub.cli", "demo", "--output", str(out), "--max-frames", "24"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    edited = tmp_path / "reposted.mp4"  # the label's corner cropped away, metadata and manifest stripped
    _ffmpeg(out, edited, "-vf", "crop=iw*3/4:ih*3/4:0:0", "-map_metadata", "-1", "-crf", "28")
    r = _verify(edited)
    assert r.returncode == 0, r.stdout
    lines = dict(ln.strip().split(":", 1) for ln in r.stdout.splitlines()[1:])
    assert lines["content credentials (C2PA)"].strip() == "none"
    assert lines["visible label"].strip().startswith("absent")
    assert lines["container metadata"].strip() == "none"
    assert lines["invisible watermark"].strip().startswith("DETECTED (dvp_hub/1)")
