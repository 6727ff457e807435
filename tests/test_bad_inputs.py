"""The bad-input matrix: each kind either works (stated) or fails with a one-line DVPError, nothing left on disk."""

import subprocess
import sys

import imageio_ffmpeg
import numpy as np
import pytest

from dvp_hub.errors import DVPError
from dvp_hub.video import VideoReader, probe_video, write_video

from .conftest import clip

FF = imageio_ffmpeg.get_ffmpeg_exe()


def _ff(*args):
    subprocess.run([FF, "-y", "-loglevel", "error", *args], check=True)


def _make(kind, tmp):
    p = tmp / f"{kind}.mp4"
    d3 = clip("talking-d3.mp4")
    if kind == "truncated":
        data = open(d3, "rb").read()
        p.write_bytes(data[: len(data) // 4])
    elif kind == "text":
        p.write_text("hello, I am not a video")
    elif kind == "zero_frames":
        _ff("-i", d3, "-vn", "-c:a", "copy", "-f", "mp4", str(p))
    elif kind == "image":
        p = tmp / "image.png"
        _ff("-i", d3, "-frames:v", "1", str(p))
    elif kind == "no_face":
        write_video([np.full((128, 128, 3), 80, np.uint8)] * 12, p, 25)
    elif kind == "face_lost_half":
        frames = list(VideoReader(d3, max_frames=20))
        write_video(frames[:8] + [np.zeros_like(f) for f in frames[8:]], p, 30)
    elif kind == "grayscale":
        _ff("-i", d3, "-t", "0.7", "-vf", "format=gray", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(p))
    elif kind == "rotated":
        src = tmp / "land.mp4"
        _ff("-i", d3, "-t", "0.7", "-vf", "transpose=2", "-c:v", "libx264", str(src))
        _ff("-display_rotation", "90", "-i", str(src), "-c", "copy", str(p))
    elif kind == "no_audio":
        _ff("-i", d3, "-t", "0.7", "-an", "-c:v", "copy", str(p))
    elif kind == "vfr":
        _ff("-i", d3, "-t", "1", "-vf", "setpts='PTS+if(eq(mod(N,3),0),0.02/TB,0)'", "-fps_mode", "vfr", str(p))
    elif kind == "4k":
        _ff("-i", d3, "-t", "0.4", "-vf", "scale=3840:2160", "-c:v", "libx264", "-preset", "ultrafast", str(p))
    return str(p)


REFUSED = ["truncated", "text", "zero_frames", "image", "no_face", "face_lost_half"]
WORKS = ["grayscale", "rotated", "no_audio", "vfr", "4k"]


@pytest.mark.parametrize("kind", REFUSED)
def test_refused_with_one_line(kind, tiny_pipeline, tmp_path):
    src = _make(kind, tmp_path)
    out = tmp_path / "out" / "o.mp4"
    out.parent.mkdir()
    with pytest.raises(DVPError) as err:
        tiny_pipeline(source_video=src, output_video=str(out), max_frames=20, progress=False)
    assert "\n" not in str(err.value) and len(str(err.value)) < 300
    assert list(out.parent.iterdir()) == []  # nothing half-written


@pytest.mark.parametrize("kind", WORKS)
def test_works(kind, tiny_pipeline, tmp_path):
    src = _make(kind, tmp_path)
    out = tmp_path / "o.mp4"
    res = tiny_pipeline(source_video=src, output_video=str(out), max_frames=12, progress=False)
    info = probe_video(out)
    assert info.num_frames == res.stats["frames"] > 0 and (info.width, info.height) == (64, 64)
    assert info.has_audio == probe_video(src).has_audio


def test_cli_refuses_with_exit_2_and_no_traceback(tmp_path):
    src = _make("image", tmp_path)
    r = subprocess.run(
        [sys.executable, "-m", "dvp_hub.cli", "reenact", "--source", src, "--output", str(tmp_path / "o.mp4")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and "still image" in r.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_portrait_clip_without_audio_works(tiny_pipeline, tmp_path):
    """edge-portrait-1280.mp4: 720 x 1280 portrait, no audio track (its first frames decode as normal frames)."""
    src = clip("edge-portrait-1280.mp4")
    out = tmp_path / "o.mp4"
    res = tiny_pipeline(source_video=src, output_video=str(out), max_frames=20, progress=False)
    assert res.stats["frames"] == 20 and res.stats["interpolated_frames"] == 0
    info = probe_video(out)
    assert info.num_frames == 20 and not info.has_audio
