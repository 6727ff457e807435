import json
import subprocess
import sys

import numpy as np
import pytest

from dvp_hub.video import probe_video

from .conftest import clip


def _dvp(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "dvp_hub.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_track_and_render(tmp_path):
    src = tmp_path / "short.mp4"
    from dvp_hub.video import VideoReader, write_video

    write_video(
        VideoReader(clip("talking-d3.mp4"), max_frames=24), src, 30, audio_from=clip("talking-d3.mp4"), synthetic=False
    )
    params = tmp_path / "p.safetensors"
    r = _dvp("track", str(src), "--output", str(params), "--quiet")
    assert r.returncode == 0, r.stderr
    assert "frames interpolated: 0" in r.stdout and "frames/s" in r.stdout
    out = tmp_path / "preview.mp4"
    r = _dvp("render", str(params), "--video", str(src), "--output", str(out), "--size", "64")
    assert r.returncode == 0, r.stderr
    info = probe_video(out)
    assert (info.width, info.height, info.num_frames) == (256, 64, 24) and info.has_audio


def test_user_errors_are_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    r = _dvp("track", str(bad), "--output", str(tmp_path / "p.safetensors"))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "p.safetensors").exists()
    r = _dvp("render", str(tmp_path / "none.safetensors"), "--video", str(bad), "--output", str(tmp_path / "o.mp4"))
    assert r.returncode == 2 and "dvp track" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_evaluate_prints_a_table_and_writes_json_with_identity(tmp_path):
    pytest.importorskip("dlib", reason="identity metrics need the eval extra: pip install 'dvp-hub[eval]'")
    out = tmp_path / "eval.json"
    r = _dvp(
        "evaluate",
        "--target-video",
        clip("target-obama-34s.mp4"),
        "--source",
        clip("talking-d3.mp4"),
        "--max-frames",
        "16",
        "--json",
        str(out),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "self-reenactment on 16 validation frames" in r.stdout and "id->target" in r.stdout
    assert "nearest training frame" in r.stdout and (tmp_path / "eval_self.png").is_file()
    assert (tmp_path / "eval_talking-d3.png").is_file()  # a contact sheet per source, next to the JSON
    res = json.loads(out.read_text())
    src = res["sources"][0]
    assert src["frames"] == 16 and src["identity_faces_found"] == "16/16"
    assert src["identity_to_target"] < 0.6 < src["identity_to_source"]  # the demo target, not the driver
    assert res["self_reenactment"]["identity_to_real_frames"] < 0.6
    # the faces as a set against the real held-out faces: the generated ones farther than real frames of other moments
    assert "face KID against the real held-out faces" in r.stdout
    native = res["self_reenactment"]["native"]
    assert native["face_kid"]["kid"] > native["face_kid_baseline_nearest_frame"]["kid"]
    assert np.isfinite(src["native"]["face_kid"]["kid"])


def test_demo_dubs_the_new_target_with_the_shipped_motion_clip(tmp_path):
    """`dvp demo`: the bundled Obama target, dubbed by the speech motion clip, labelled synthetic."""
    from dvp_hub.video import probe_video, read_metadata

    out = tmp_path / "demo.mp4"
    r = _dvp("demo", "--output", str(out), "--max-frames", "12")
    assert r.returncode == 0, r.stderr[-2000:]
    info = probe_video(out)
    assert info.num_frames == 12 and (info.width, info.height) == (1280, 720)  # the target's own frame, full size
    assert "synthetic" in " ".join(read_metadata(out).values()).lower()
    crop = tmp_path / "crop.mp4"
    r = _dvp("demo", "--output", str(crop), "--max-frames", "3", "--crop-only")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (probe_video(crop).width, probe_video(crop).height) == (512, 512)  # the 256 px crop, refined to twice
    r = _dvp("demo", "--output", str(tmp_path / "r.mp4"), "--max-frames", "4", "--mode", "sing")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_reenact_int8_flag_is_default_on_or_off():
    """`dvp reenact` passes None (the pipeline's default: int8 where a run pays for it), True or False."""
    from dvp_hub.cli_parser import build_parser

    base = ["reenact", "--source", "a.mp4", "--target", "demo", "--output", "o.mp4"]
    assert build_parser().parse_args(base).int8 is None
    assert build_parser().parse_args([*base, "--int8"]).int8 is True
    assert build_parser().parse_args([*base, "--no-int8"]).int8 is False
