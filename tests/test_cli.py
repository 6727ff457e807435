import subprocess
import sys

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
