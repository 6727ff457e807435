"""The bad-input matrix, through all three surfaces: the pipeline API (`DVPError`), the CLI (exit 2, one line on
stderr, no traceback) and the Space (`gr.Error`). Each kind either works (the output is checked) or is refused
with the same one-line message everywhere, and nothing half-written is left on disk."""

import os
import re
import subprocess
import sys
import tempfile

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
        with open(d3, "rb") as f:
            data = f.read()
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
    elif kind == "small_face":
        return clip("edge-small-face.mp4")  # 720 x 1080 full-body shot, 103 frames
    elif kind == "two_faces":
        return clip("edge-two-faces.mp4")  # a second face comes in for about 60 of its 282 frames
    elif kind == "portrait_no_audio":
        return clip("edge-portrait-1280.mp4")  # 720 x 1280, no audio track
    elif kind == "black_first_frames":
        frames = list(VideoReader(d3, max_frames=14))
        write_video([np.zeros_like(f) for f in frames[:3]] + frames[3:], p, 30)
    elif kind == "grayscale":
        _ff("-i", d3, "-t", "0.5", "-vf", "format=gray", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(p))
    elif kind == "rotated":
        src = tmp / "land.mp4"
        _ff("-i", d3, "-t", "0.5", "-vf", "transpose=2", "-c:v", "libx264", str(src))
        _ff("-display_rotation", "90", "-i", str(src), "-c", "copy", str(p))
    elif kind == "no_audio":
        _ff("-i", d3, "-t", "0.5", "-an", "-c:v", "copy", str(p))
    elif kind == "vfr":
        _ff("-i", d3, "-t", "0.6", "-vf", "setpts='PTS+if(eq(mod(N,3),0),0.02/TB,0)'", "-fps_mode", "vfr", str(p))
    elif kind == "4k":
        _ff("-i", d3, "-t", "0.3", "-vf", "scale=3840:2160", "-c:v", "libx264", "-preset", "ultrafast", str(p))
    elif kind == "over_length_limit":  # the Space's limit is lowered to 0.5 s for this test
        _ff("-i", d3, "-t", "1", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(p))
    return str(p)


REFUSED = ["truncated", "text", "zero_frames", "image", "no_face", "face_lost_half"]
WORKS = [
    "small_face",
    "two_faces",
    "portrait_no_audio",
    "black_first_frames",
    "grayscale",
    "rotated",
    "no_audio",
    "vfr",
    "4k",
    "over_length_limit",  # the API and the CLI stream any length; only the Space has a limit
]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    return {kind: _make(kind, tmp) for kind in REFUSED + WORKS}


@pytest.fixture(scope="module")
def target_folder(tiny_pipeline, tmp_path_factory):
    folder = tmp_path_factory.mktemp("target") / "tiny"
    tiny_pipeline.save_pretrained(str(folder))
    return str(folder)


def _api_message(pipe, src):
    with pytest.raises(DVPError) as err:
        pipe(source_video=src, progress=False)
    return str(err.value)


def _check_output(out, src, frames=None):
    info = probe_video(out)
    assert info.num_frames > 0 and (info.width, info.height) == (64, 64)
    if frames is not None:
        assert info.num_frames == frames
    assert info.has_audio == probe_video(src).has_audio


# --- the pipeline API ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", REFUSED)
def test_api_refuses_with_one_line(kind, sources, tiny_pipeline, tmp_path):
    out = tmp_path / "out" / "o.mp4"
    out.parent.mkdir()
    with pytest.raises(DVPError) as err:
        tiny_pipeline(source_video=sources[kind], output_video=str(out), progress=False)
    assert "\n" not in str(err.value) and 10 < len(str(err.value)) < 300
    assert list(out.parent.iterdir()) == []  # nothing half-written


@pytest.mark.parametrize("kind", WORKS)
def test_api_works(kind, sources, tiny_pipeline, tmp_path):
    src, out = sources[kind], tmp_path / "o.mp4"
    res = tiny_pipeline(source_video=src, output_video=str(out), progress=False)
    _check_output(out, src, res.stats["frames"])
    n = sum(1 for _ in VideoReader(src))  # decoded, not estimated (variable frame rate)
    assert res.stats["frames"] == n
    if kind == "black_first_frames":
        assert res.stats["interpolated_frames"] == 3  # the black frames, filled from their neighbours
    elif kind in ("small_face", "two_faces"):
        assert res.stats["interpolated_frames"] <= n // 20  # the subject is tracked throughout


# --- the CLI (in process: argument parsing, error handling and exit codes are main()'s) -----------------------
def _cli(capsys, *args):
    from dvp_hub.cli import main

    rc = main(list(args))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    # the lines a terminal ends up showing (progress bars redraw their line with carriage returns)
    shown = [seg.split("\r")[-1] for seg in captured.err.split("\n") if seg.split("\r")[-1].strip()]
    return rc, shown, captured.out


@pytest.mark.parametrize("kind", REFUSED)
def test_cli_refuses_with_exit_2_and_the_same_line(kind, sources, tiny_pipeline, target_folder, tmp_path, capsys):
    out = tmp_path / "out" / "o.mp4"
    out.parent.mkdir()
    rc, err, stdout = _cli(
        capsys, "reenact", "--target", target_folder, "--source", sources[kind], "--output", str(out)
    )
    assert rc == 2 and [line for line in err if "error" in line] == err[-1:]
    assert err[-1] == f"dvp reenact: error: {_api_message(tiny_pipeline, sources[kind])}"
    assert list(out.parent.iterdir()) == []


@pytest.mark.parametrize("kind", WORKS)
def test_cli_works(kind, sources, target_folder, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    rc, err, stdout = _cli(
        capsys, "reenact", "--target", target_folder, "--source", sources[kind], "--output", str(out)
    )
    assert rc == 0, err
    _check_output(out, sources[kind])


def test_cli_subprocess_has_no_traceback(sources, tmp_path):
    """One real process: what a user sees in a terminal."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "dvp_hub.cli",
            "reenact",
            "--source",
            sources["image"],
            "--output",
            str(tmp_path / "o.mp4"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and "still image" in r.stderr
    assert not (tmp_path / "o.mp4").exists()


# --- the Space (its Reenact function, as the button calls it; test_space.py drives it through a browser) -----
def _space(src, target_folder):
    """The Space's Reenact with the tiny target picked from the list (it lies in the targets folder, `space_tmp`)."""
    import dvp_hub.space.common  # noqa: F401 - space.common below
    from dvp_hub import space

    name = os.path.basename(target_folder)
    return list(space.reenact(src, name, "", "reenact", ["pose", "expression", "gaze"], True))[-1]


@pytest.fixture
def space_tmp(tmp_path, monkeypatch, target_folder):
    monkeypatch.setenv("DVP_TARGETS", os.path.dirname(target_folder))  # the Space lists the tiny target by name
    folder = tmp_path / "space_tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.mark.parametrize("kind", REFUSED)
def test_space_refuses_with_gr_error(kind, sources, tiny_pipeline, target_folder, space_tmp):
    import gradio as gr

    with pytest.raises(gr.Error) as err:
        _space(sources[kind], target_folder)
    src = str(sources[kind])  # the Space names the upload by its own name, not by its temporary path
    assert err.value.message == _api_message(tiny_pipeline, sources[kind]).replace(src, os.path.basename(src))
    assert os.listdir(space_tmp) == []  # no result folder left behind


@pytest.mark.parametrize("kind", [k for k in WORKS if k != "over_length_limit"])
def test_space_works(kind, sources, target_folder, space_tmp):
    result, side_by_side, summary = _space(sources[kind], target_folder)
    _check_output(result, sources[kind])
    side = probe_video(side_by_side)  # three 360 px panels (the tiny target has no full frame: a square crop)
    assert (side.width, side.height) == (3 * 360, 360) and "frames" in summary


def test_space_refuses_over_the_length_limit(sources, target_folder, space_tmp, monkeypatch):
    import gradio as gr

    import dvp_hub.space.common  # noqa: F401 - space.common below
    from dvp_hub import space

    monkeypatch.setattr(space.common, "MAX_SECONDS", 0.5)
    with pytest.raises(gr.Error, match=r"lasts 1 s; the limit is 0.5 s"):
        _space(sources["over_length_limit"], target_folder)
    assert os.listdir(space_tmp) == []


# --- an extreme head pose (profile) ---------------------------------------------------------------------------
# The shared clips turn the head at most 20 degrees (speech-wda), and there is no profile clip. What a profile
# does to tracking is losing the face (the face-lost and black-frame kinds above); what it does to the output
# is a pose the target never showed. That second part is tested on parameters: a source turning to 80 degrees.
def _turning_source(d3_sequence):
    from dataclasses import replace

    from dvp_hub.geometry import axis_angle_to_matrix, euler_to_matrix, matrix_to_axis_angle

    _, seq = d3_sequence
    seq = seq.slice(0, 24)
    yaw = np.r_[np.zeros(12), np.linspace(10, 80, 12)]
    turn = np.stack([euler_to_matrix(y, 0, 0) for y in yaw])
    return replace(seq, rotation=matrix_to_axis_angle(turn @ axis_angle_to_matrix(seq.rotation)))


def test_extreme_head_pose_is_generated_and_reported(d3_sequence, tiny_pipeline, target_folder, tmp_path, capsys):
    src = _turning_source(d3_sequence)
    # by default the head is held near the target's trained poses: no frame beyond them, the held ones counted
    held = tiny_pipeline(source_parameters=src, neutral_frame=0, progress=False, watermark=False).stats
    assert held["frames_beyond_target_pose_range"] == 0 and held["frames_pose_limited"] >= 12
    assert held["max_pose_offset_deg"] <= held["target_pose_range_deg"] + 5
    # with the limit off it is extrapolated, and reported
    res = tiny_pipeline(source_parameters=src, neutral_frame=0, progress=False, watermark=False, limit_pose=False)
    st = res.stats
    assert res.frames.shape[1] == 24 and np.isfinite(res.frames).all()
    assert st["max_pose_offset_deg"] > 70 and 0 < st["frames_beyond_target_pose_range"] <= 12
    assert st["frames_pose_limited"] == 0
    # the CLI, from the same motion saved as a parameter file: it works, and says what it did
    params = tmp_path / "turning.safetensors"
    src.save(str(params))
    out = tmp_path / "o.mp4"
    rc, err, stdout = _cli(capsys, "reenact", "--target", target_folder, "--source", str(params), "--output", str(out))
    assert rc == 0 and probe_video(out).num_frames == 24
    assert re.search(r"note: \d+ frames held the head nearer the target's trained poses", stdout)
    out = tmp_path / "x.mp4"
    rc, err, stdout = _cli(
        capsys, "reenact", "--target", target_folder, "--source", str(params), "--output", str(out), "--no-pose-limit"
    )
    assert rc == 0 and probe_video(out).num_frames == 24
    assert re.search(r"note: 1\d frames turn the head up to [789]\d", stdout) and "extrapolated" in stdout


# --- targets by name, and what a visitor may name --------------------------------------------------------------
def test_targets_folder_names_a_target_for_from_pretrained_and_the_space(target_folder, monkeypatch):
    from dvp_hub import DeepVideoPortraitPipeline
    from dvp_hub.space.common import target_choices
    from dvp_hub.targets import list_targets

    monkeypatch.setenv("DVP_TARGETS", os.path.dirname(target_folder))
    assert list_targets() == {"tiny": target_folder}
    assert target_choices() == ["demo", "tiny"]
    pipe = DeepVideoPortraitPipeline.from_pretrained("tiny")
    assert pipe.target.config.resolution == 64
    with pytest.raises(DVPError, match=r"no such target in .*dvp train VIDEO --name nobody"):
        DeepVideoPortraitPipeline.from_pretrained("nobody")


@pytest.mark.parametrize("typed", ["../../../../etc", "/etc/passwd", "/etc", "~root", "a/../../b", "tests"])
def test_space_opens_no_server_path_and_says_nothing_of_what_is_there(typed, target_folder, monkeypatch):
    from dvp_hub.pipelines.target_folder import resolve_target
    from dvp_hub.space.common import pick_target

    monkeypatch.setenv("DVP_TARGETS", os.path.dirname(target_folder))
    with pytest.raises(DVPError) as typed_err:
        resolve_target(pick_target("demo", typed), local_paths=False)
    with pytest.raises(DVPError) as direct_err:  # the loader itself, whatever reaches it
        resolve_target(typed, local_paths=False)
    with pytest.raises(DVPError) as picked_err:
        pick_target(typed, "")  # a value the list does not hold, sent by a client
    for err in (typed_err, picked_err, direct_err):
        message = str(err.value)
        assert "model_index" not in message and "not a target folder" not in message and "holds" not in message
    with pytest.raises(DVPError, match="not a target here"):
        resolve_target(target_folder, local_paths=False)  # an existing target folder, by path: refused too
    assert pick_target("tiny", "") == "tiny" and pick_target("demo", " owner/name ") == "owner/name"
