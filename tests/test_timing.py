"""Variable-frame-rate sources (a phone's: irregular timestamps, an average rate below the nominal one):
the output lasts as long as the source, every frame at its time, audio in sync, progress totals right."""

import re
import subprocess

import imageio_ffmpeg
import pytest

from dvp_hub.video import VideoReader, probe_video

from .conftest import clip

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


@pytest.fixture(scope="module")
def vfr_clip(tmp_path_factory):
    """4 s of talking-d3 with about one frame in three dropped at irregular places, the rest kept at their
    original times (30 fps time base), with the audio: average ~20 fps against a nominal 30."""
    out = tmp_path_factory.mktemp("vfr") / "phone.mp4"
    keep = "not(eq(mod(n,3),1))*not(eq(mod(n,11),4))+eq(mod(n,17),1)"
    subprocess.run(
        [
            FFMPEG,
            "-v",
            "error",
            "-y",
            "-i",
            clip("talking-d3.mp4"),
            "-t",
            "4",
            "-vf",
            f"select='{keep}'",
            "-fps_mode",
            "vfr",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-c:a",
            "aac",
            str(out),
        ],
        check=True,
    )
    return str(out)


def _stream_seconds(path: str, stream: str) -> float:
    """Duration of a file's video ("v") or audio ("a") stream, as ffmpeg decodes it."""
    proc = subprocess.run(
        [FFMPEG, "-hide_banner", "-i", path, "-map", f"0:{stream}:0", "-f", "null", "-"],
        capture_output=True,
        text=True,
    )
    h, m, s = re.findall(r"time=(\d+):(\d+):([\d.]+)", proc.stderr)[-1]
    return int(h) * 3600 + int(m) * 60 + float(s)


def _passthrough_frames(path: str) -> int:
    proc = subprocess.run(
        [FFMPEG, "-hide_banner", "-i", path, "-map", "0:v:0", "-fps_mode", "passthrough", "-f", "null", "-"],
        capture_output=True,
        text=True,
    )
    return int(re.findall(r"frame=\s*(\d+)", proc.stderr)[-1])


def test_the_test_clip_is_variable_rate(vfr_clip):
    stored = _passthrough_frames(vfr_clip)
    seconds = _stream_seconds(vfr_clip, "v")
    assert stored < 0.8 * 30 * seconds  # frames are missing from the nominal 30 fps grid


def test_reader_yields_a_constant_rate_over_the_source_duration(vfr_clip):
    reader = VideoReader(vfr_clip)
    info = reader.info
    assert info.variable_rate and info.fps == pytest.approx(30.0)
    n = sum(1 for _ in reader)
    assert n == len(reader)  # progress totals are right
    assert abs(n / info.fps - _stream_seconds(vfr_clip, "v")) <= 1 / info.fps


def test_constant_rate_clips_are_unchanged():
    info = probe_video(clip("talking-d3.mp4"))
    assert not info.variable_rate and (info.fps, info.num_frames) == (30.0, 354)


def test_reenacted_output_lasts_as_long_as_the_source_with_audio_in_sync(
    vfr_clip, tiny_pipeline, tmp_path, monkeypatch
):
    out = tmp_path / "out.mp4"
    ticks = []

    class Bar:  # what the progress bars are told: totals and updates
        def __init__(self, total, **_):
            self.total, self.n = total, 0
            ticks.append(self)

        def update(self, k):
            self.n += k

        def close(self):
            pass

    import dvp_hub.pipelines.steps as steps

    monkeypatch.setattr(steps, "stage_bar", lambda pipe, label, total: Bar(total))
    tiny_pipeline(source_video=vfr_clip, mode="dub", output_video=str(out))
    src_seconds = _stream_seconds(vfr_clip, "v")
    info = probe_video(out)
    assert info.fps == pytest.approx(30.0)
    assert abs(info.num_frames / info.fps - src_seconds) <= 1 / 30  # as long as the source, within a frame
    assert abs(_stream_seconds(str(out), "v") - src_seconds) <= 1 / 30
    assert abs(_stream_seconds(str(out), "a") - _stream_seconds(str(out), "v")) <= 1 / 30  # audio in sync
    assert [b.n for b in ticks] == [b.total for b in ticks] == [info.num_frames] * 2  # every bar ends at its total


def test_a_variable_rate_clip_is_read_from_its_first_frame_only(vfr_clip):
    with pytest.raises(ValueError, match="variable-rate"):
        VideoReader(vfr_clip, start=10)
