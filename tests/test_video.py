import subprocess

import imageio_ffmpeg
import numpy as np
import pytest

from dvp_hub.errors import VideoReadError, VideoWriteError
from dvp_hub.video import SYNTHETIC_COMMENT, VideoReader, VideoWriter, probe_video, read_metadata, write_video

from .conftest import clip


def test_probe_real_clip():
    info = probe_video(clip("talking-d6.mp4"))
    assert (info.width, info.height, info.num_frames) == (480, 480, 1008)
    assert info.fps == pytest.approx(30.0)
    assert info.has_audio and info.rotation == 0


def test_streaming_reader_yields_frames_one_at_a_time():
    reader = VideoReader(clip("talking-d3.mp4"), max_frames=12)
    frames = list(reader)
    assert len(frames) == 12 == len(reader)
    assert frames[0].shape == (512, 512, 3) and frames[0].dtype == np.uint8
    assert not np.array_equal(frames[0], frames[11])


def test_round_trip_with_audio_and_metadata(tmp_path):
    frames = list(VideoReader(clip("talking-d3.mp4"), max_frames=30))
    out = tmp_path / "out.mp4"
    write_video(frames, out, 30, audio_from=clip("talking-d3.mp4"))
    info = probe_video(out)
    assert info.num_frames == 30 and info.has_audio and info.codec == "h264"
    back = list(VideoReader(out))
    # H.264 at crf 18: mean absolute error of a few grey levels
    assert np.abs(back[10].astype(float) - frames[10]).mean() < 4.0
    assert read_metadata(out)["comment"] == SYNTHETIC_COMMENT
    assert not list(tmp_path.glob(".tmp-*"))


def test_a_reader_can_start_at_a_frame():
    path = clip("talking-d3.mp4")
    whole = list(VideoReader(path, max_frames=40, size=(64, 64)))
    later = VideoReader(path, start=25, max_frames=10, size=(64, 64))
    assert len(later) == 10 and len(VideoReader(path, start=25)) == probe_video(path).num_frames - 25
    frames = list(later)
    assert len(frames) == 10 and all(np.array_equal(a, b) for a, b in zip(frames, whole[25:35]))


def test_a_file_is_probed_once_until_it_changes(tmp_path, monkeypatch):
    from dvp_hub import video_probe

    path = tmp_path / "clip.mp4"
    write_video([np.full((32, 48, 3), 90, np.uint8)] * 4, path, 10)
    calls = []
    probe = video_probe._probe
    monkeypatch.setattr(video_probe, "_probe", lambda p: calls.append(p) or probe(p))
    first, again = probe_video(path), probe_video(str(path))
    assert len(calls) == 1 and first == again and first is not again  # each call its own copy
    object.__setattr__(again, "width", 1)  # as `VideoReader` corrects a size: the next caller is not affected
    assert probe_video(path).width == 48 and len(calls) == 1
    write_video([np.full((32, 48, 3), 90, np.uint8)] * 7, tmp_path / "other.mp4", 10)
    (tmp_path / "other.mp4").replace(path)  # a new file under the same name
    assert probe_video(path).num_frames == 7 and len(calls) == 2


def test_the_video_sets_the_audio_s_length(tmp_path):
    """The copied audio is cut to a shorter video and padded with silence under a longer one."""
    import re

    def seconds(path, stream):
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(path), "-map", f"0:{stream}", "-f", "null", "-"]
        log = subprocess.run(cmd, capture_output=True, text=True).stderr
        h, m, s = re.findall(r"time=(\d+):(\d+):([\d.]+)", log)[-1]
        return 3600 * int(h) + 60 * int(m) + float(s)

    short = tmp_path / "short.m4a"
    cut = ["-v", "error", "-i", clip("talking-d3.mp4"), "-t", "0.5", "-vn", str(short)]
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), *cut], check=True)
    frames = list(VideoReader(clip("talking-d3.mp4"), max_frames=30))
    for audio in (clip("talking-d3.mp4"), short):  # ~17 s and 0.5 s of audio under 1 s of video
        out = tmp_path / "out.mp4"
        write_video(frames, out, 30, audio_from=audio)
        assert seconds(out, "v") == pytest.approx(1.0, abs=0.04)
        assert seconds(out, "a") == pytest.approx(1.0, abs=0.05)


def test_odd_size_is_padded_to_even(tmp_path):
    frames = [np.full((33, 47, 3), 128, np.uint8)] * 3
    write_video(frames, tmp_path / "odd.mp4", 10)
    info = probe_video(tmp_path / "odd.mp4")
    assert (info.width, info.height) == (48, 34)


def test_rotation_flag_is_applied(tmp_path):
    src = tmp_path / "land.mp4"
    write_video([np.zeros((64, 96, 3), np.uint8)] * 5, src, 10)
    rot = tmp_path / "rot.mp4"
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-loglevel",
            "error",
            "-display_rotation",
            "90",
            "-i",
            str(src),
            "-c",
            "copy",
            str(rot),
        ],
        check=True,
    )
    info = probe_video(rot)
    assert info.rotation in (90, 270) and (info.width, info.height) == (64, 96)
    assert next(iter(VideoReader(rot))).shape == (96, 64, 3)


def test_bad_inputs_give_one_line_errors(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    data = open(clip("talking-d3.mp4"), "rb").read()
    trunc = tmp_path / "trunc.mp4"
    trunc.write_bytes(data[: len(data) // 3])
    audio = tmp_path / "audio.m4a"
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-loglevel",
            "error",
            "-i",
            clip("talking-d3.mp4"),
            "-vn",
            "-c:a",
            "copy",
            str(audio),
        ],
        check=True,
    )
    for path, words in [
        (text, "not a readable video"),
        (empty, "empty"),
        (trunc, "truncated"),
        (tmp_path / "missing.mp4", "no such file"),
        (audio, "no video stream"),
    ]:
        with pytest.raises(VideoReadError) as err:
            list(VideoReader(path))
        msg = str(err.value)
        assert "\n" not in msg and str(path) in msg and words in msg


def test_writer_failure_leaves_nothing(tmp_path):
    out = tmp_path / "x.mp4"
    with pytest.raises(RuntimeError):
        with __import__("dvp_hub.video", fromlist=["VideoWriter"]).VideoWriter(out, 10) as w:
            w.write(np.zeros((16, 16, 3), np.uint8))
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(VideoWriteError):
        write_video([], tmp_path / "none.mp4", 10)


def test_writer_opened_ahead_records_the_same_and_leaves_nothing_when_empty(tmp_path):
    """`VideoWriter.open` starts the encoder before the first frame (a live recording); the frames then written are
    the video, a size that differs is refused, and closing with no frame written leaves no file."""
    from dvp_hub.video import VideoWriter

    w = VideoWriter(tmp_path / "ahead.mp4", 10, low_latency=True)
    w.open(32, 24)
    w.open(32, 24)  # no-op once open
    for i in range(5):
        w.write(np.full((24, 32, 3), 40 * i, np.uint8))
    with pytest.raises(VideoWriteError, match="frame size changed"):
        w.write(np.zeros((16, 16, 3), np.uint8))
    w.close()
    info = probe_video(tmp_path / "ahead.mp4")
    assert (info.width, info.height, info.num_frames) == (32, 24, 5)
    empty = VideoWriter(tmp_path / "empty.mp4", 10)
    empty.open(32, 24)
    with pytest.raises(VideoWriteError, match="no frames were written"):
        empty.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ahead.mp4"]


def test_the_writer_converts_to_i420_as_ffmpeg_does():
    """`rgb_to_i420` (what the writer hands ffmpeg) against ffmpeg's own conversion of the same RGB: a real frame with
    the visible label, and a one-pixel red / white checkerboard whose chroma must be each 2 x 2 block's mean (taking
    one pixel's would give pure red's)."""
    from dvp_hub.provenance.label import mark_synthetic
    from dvp_hub.video import rgb_to_i420

    def ffmpeg(rgb):
        h, w = rgb.shape[:2]
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}"]
        cmd += ["-i", "-", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"]
        out = subprocess.run(cmd, input=rgb.tobytes(), capture_output=True, check=True).stdout
        return np.frombuffer(out, np.uint8).reshape(h * 3 // 2, w).astype(int)

    frame = mark_synthetic(next(iter(VideoReader(clip("talking-d3.mp4"), max_frames=1))))
    h = frame.shape[0]
    ours, theirs = rgb_to_i420(frame).astype(int), ffmpeg(frame)
    assert ours.shape == theirs.shape
    assert np.abs(ours[:h] - theirs[:h]).max() <= 1 and np.abs(ours[h:] - theirs[h:]).max() <= 2
    yy, xx = np.mgrid[:16, :16]
    board = np.where(((xx + yy) % 2 == 0)[..., None], np.uint8([255, 0, 0]), np.uint8([255, 255, 255]))
    ours, theirs = rgb_to_i420(board.astype(np.uint8)).astype(int), ffmpeg(board.astype(np.uint8))
    assert np.abs(ours[16:] - theirs[16:]).max() <= 2 and abs(ours[16, 0] - 109) <= 1  # red and white, averaged


def test_the_writer_converts_only_a_changed_box_to_the_same_i420(tmp_path):
    """`VideoWriter.write(changed=box)` (frames that differ only inside a box, as pasted-back ones) hands ffmpeg the
    same bytes as converting each whole frame: boxes at odd and even edges, reaching the padded edge of an odd-sized
    frame, and empty."""
    from dvp_hub import video

    sent = {False: [], True: []}
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (45, 63, 3), np.uint8)
    boxes = [(3, 5, 20, 31), (0, 0, 10, 10), (40, 30, 63, 45), (11, 12, 11, 30), (0, 0, 63, 45)]
    frames = []
    for x0, y0, x1, y1 in boxes:
        f = base.copy()
        f[y0:y1, x0:x1] = rng.integers(0, 256, (y1 - y0, x1 - x0, 3), np.uint8)
        frames.append(f)
        base = f
    for use_box in (False, True):
        writer = video.VideoWriter(tmp_path / f"{use_box}.mp4", 10, synthetic=False)
        # opened on an encoder that keeps what it is sent (the writer reuses its buffer: a copy)
        writer._size = (63, 45)
        writer._gen = type("Encoder", (), {"send": lambda self, b, out=sent[use_box]: out.append(b.copy())})()
        for frame, box in zip(frames, boxes):
            writer.write(frame, box if use_box else None)
    assert len(sent[True]) == len(frames)
    for a, b in zip(sent[False], sent[True]):
        np.testing.assert_array_equal(a, b)


def test_frames_written_with_changed_boxes_decode_as_frames_written_whole(tmp_path):
    """Through the real encoder (the writer updates the buffer it last sent in place): an odd-sized clip whose
    frames change inside boxes, one repeated with an empty box, decodes to the same frames either way."""
    rng = np.random.default_rng(1)
    frames, boxes, frame = [], [], rng.integers(0, 256, (71, 95, 3), np.uint8)
    for box in [(0, 0, 95, 71), (10, 7, 40, 33), (10, 7, 10, 7), (50, 40, 95, 71), (1, 1, 94, 70), (30, 3, 31, 4)]:
        frame = frame.copy()
        x0, y0, x1, y1 = box
        frame[y0:y1, x0:x1] = rng.integers(0, 256, (y1 - y0, x1 - x0, 3), np.uint8)
        frames.append(frame)
        boxes.append(box)
    decoded = []
    for use_box in (False, True):
        with VideoWriter(tmp_path / f"{use_box}.mp4", 10, synthetic=False) as writer:
            for f, box in zip(frames, boxes):
                writer.write(f, box if use_box else None)
        decoded.append(np.stack(list(VideoReader(tmp_path / f"{use_box}.mp4"))))
    assert decoded[0].shape == (6, 72, 96, 3)  # padded to even sides
    np.testing.assert_array_equal(decoded[0], decoded[1])
