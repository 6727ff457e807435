import numpy as np
import pytest

from dvp_hub.errors import FaceTrackingError
from dvp_hub.face.tracker import FaceTracker, track_video
from dvp_hub.video import VideoReader

from .conftest import clip


def test_tracks_478_landmarks_on_a_real_clip():
    track = track_video(clip("talking-d6.mp4"), max_frames=40)
    assert track.landmarks.shape == (40, 478, 3)
    assert track.detected.all()
    xy = track.landmarks[..., :2]
    assert (xy > 0).all() and (xy < 480).all()
    # the iris centres lie inside their eyes: 468 near the image-left eye (33/133), 473 near 263/362
    eye_r = track.landmarks[:, [33, 133], :2].mean(1)
    eye_l = track.landmarks[:, [263, 362], :2].mean(1)
    assert (np.linalg.norm(track.landmarks[:, 468, :2] - eye_r, axis=-1) < 15).all()
    assert (np.linalg.norm(track.landmarks[:, 473, :2] - eye_l, axis=-1) < 15).all()


def test_missing_frames_are_interpolated_and_counted():
    frames = list(VideoReader(clip("talking-d3.mp4"), max_frames=20))
    for i in (5, 6, 7):
        frames[i] = np.zeros_like(frames[i])
    with FaceTracker() as tracker:
        track = tracker.track(frames)
    assert track.num_interpolated == 3
    lm = track.landmarks[:, 1, :2]
    assert np.allclose(lm[6], (lm[4] * 2 + lm[8] * 2) / 4, atol=3.0)


def test_mostly_missing_face_is_refused():
    frames = list(VideoReader(clip("talking-d3.mp4"), max_frames=12))
    frames = frames[:4] + [np.zeros_like(f) for f in frames[4:]]
    with FaceTracker() as tracker, pytest.raises(FaceTrackingError, match="only 4 of 12"):
        tracker.track(frames, name="clip.mp4")


def test_no_face_is_refused():
    with FaceTracker() as tracker, pytest.raises(FaceTrackingError, match="no face found"):
        tracker.track([np.full((128, 128, 3), 90, np.uint8)] * 4)


@pytest.mark.slow
def test_small_face_is_tracked_in_an_upscaled_crop():
    track = track_video(clip("edge-small-face.mp4"), max_frames=30)
    assert track.small_face_mode
    assert track.detected.mean() > 0.9
    height = np.ptp(track.landmarks[0, :, 1])
    assert height < 0.15 * 720


@pytest.mark.slow
def test_two_faces_keep_one_subject():
    track = track_video(clip("edge-two-faces.mp4"))
    centres = track.landmarks[..., :2].mean(1)
    jumps = np.linalg.norm(np.diff(centres, axis=0), axis=-1)
    size = np.ptp(track.landmarks[0, :, 1])
    assert jumps.max() < 0.3 * size  # never switches to the other person


def test_missing_system_libraries_are_one_line(monkeypatch):
    """On a slim Debian image mediapipe's OpenCV cannot find libGL: the error names the packages to install."""
    import builtins

    from dvp_hub.errors import FaceTrackingError
    from dvp_hub.face.tracker import FaceTracker

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "mediapipe":
            raise ImportError("libGL.so.1: cannot open shared object file: No such file or directory")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(FaceTrackingError, match="apt-get install -y libgl1 libglib2.0-0") as err:
        FaceTracker()
    assert "\n" not in str(err.value)


def _one_tracker(reader):
    with FaceTracker() as tracker:
        return tracker.track(reader, fps=reader.fps, num_frames=len(reader), name=reader.path)


def test_a_long_clip_is_tracked_in_two_halves_without_a_seam():
    from dvp_hub.face import track_parts

    reader = VideoReader(clip("talking-d9.mp4"), max_frames=track_parts.SPLIT_MIN_FRAMES + 40)
    counts = []
    parts = track_parts.track_reader(reader, progress=lambda done, total: counts.append((done, total)))
    whole = _one_tracker(reader)
    n, seam = len(reader), len(reader) // 2
    assert parts.landmarks.shape == whole.landmarks.shape and parts.detected.all()
    assert counts[-1] == (n, n) and len(counts) == n  # every frame reported once, the lead frames not
    diff = np.abs(parts.landmarks - whole.landmarks)[..., :2].mean(axis=(1, 2))
    assert diff[seam - 3 : seam + 3].max() < 0.3  # the second tracker has settled before the seam
    motion = np.abs(np.diff(parts.landmarks[..., :2], axis=0)).mean(axis=(1, 2))
    assert motion[seam - 1] < 2 * np.abs(np.diff(whole.landmarks[..., :2], axis=0)).mean(axis=(1, 2))[seam - 1] + 0.2


def test_halves_that_do_not_join_are_followed_in_one_piece(monkeypatch):
    from dvp_hub.face import track_parts

    reader = VideoReader(clip("talking-d3.mp4"), max_frames=track_parts.SPLIT_MIN_FRAMES + 10)
    monkeypatch.setattr(track_parts, "joins", lambda before, after: False)  # as if another face came after the seam
    parts = track_parts.track_reader(reader)
    np.testing.assert_array_equal(parts.landmarks, _one_tracker(reader).landmarks)


def test_halves_whose_seam_frames_differ_are_followed_in_one_piece(monkeypatch):
    from dvp_hub.face import track_parts

    reader = VideoReader(clip("talking-d3.mp4"), max_frames=track_parts.SPLIT_MIN_FRAMES + 10)
    keeping = track_parts._keeping

    def other_frame(frames, index, box, key):  # as if the second reader counted a frame more before the seam
        for frame in keeping(frames, index, box, key):
            box[1] = np.zeros_like(frame)
            yield frame

    monkeypatch.setattr(track_parts, "_keeping", other_frame)
    parts = track_parts.track_reader(reader)
    np.testing.assert_array_equal(parts.landmarks, _one_tracker(reader).landmarks)


def test_an_error_in_one_half_stops_the_other_soon():
    from dvp_hub.face import track_parts

    reader = VideoReader(clip("talking-d9.mp4"), max_frames=track_parts.SPLIT_MIN_FRAMES + 100)
    calls = []

    def progress(done, total):
        calls.append(done)
        if len(calls) == 20:
            raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        track_parts.track_reader(reader, progress=progress)
    assert len(calls) < 40  # the other half stopped at its next frame, not at the end of its 150
