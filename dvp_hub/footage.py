"""Will this footage make a good target? The check `dvp train` runs first (and `dvp train --check` alone).

`analyse` decodes and tracks the clip once (the same tracking, shot and bar detection and fit that
`dataset.prepare_target_dataset` then reuses, so nothing is tracked twice), and `assess` turns what it measured
into plain sentences: what the target will and will not do well, and a refusal where the footage cannot work.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InputError
from .face import topology as topo
from .face.fitting import fit_sequence
from .face.model import load_face_model
from .face.sequence import FaceSequence
from .face.tracker import FaceTracker
from .geometry import axis_angle_to_matrix, matrix_to_axis_angle
from .shots import FrameProbe, Shots, find_cuts, split_shots
from .video import VideoReader

MIN_SECONDS = 15.0  # usable footage below this is refused: a generator learns too few poses and mouths from it
GOOD_SECONDS = 60.0  # the paper trains on a few minutes; a minute is where results stop being thin
MIN_HEIGHT = 360  # frame height under which the face is too small for a sharp target
TURN_NARROW_DEG = 8.0  # a head that never turns further is held close to frontal when reenacted
MOUTH_WIDE = 0.35  # inner-lip gap over mouth width of a wide-open mouth (a shout; speech stays under ~0.25)
MOUTH_SPEECH = 0.12  # the 95th percentile of the opening under which the mouth hardly moves


@dataclass
class Footage:
    """What `analyse` measured. ``shots``: the clip's shots and the one kept; ``sequence``: the fitted kept shot;
    ``probe``: the decode-time probe (picture change, picture box); ``missing``: frames of the kept shot where no
    face was detected (interpolated); ``other_faces``: frames where another face was seen and set aside."""

    video: str
    fps: float
    width: int
    height: int
    frames: int
    shots: Shots
    sequence: FaceSequence
    probe: FrameProbe
    missing: int
    other_faces: int
    figures: dict = field(default_factory=dict)

    @property
    def usable_seconds(self) -> float:
        return (self.shots.stop - self.shots.start) / self.fps


def analyse(video: str, max_frames: int | None = None, shot: str | int = "longest", progress=None) -> Footage:
    """Decode, track, find the shots and fit the kept one. Raises `InputError` (one line) for a clip with no
    face (or a face in under half its frames), too few frames, or a kept shot under 20 frames."""
    reader = VideoReader(video, max_frames=max_frames)
    if len(reader) < 20:
        raise InputError(f"{video}: only {len(reader)} frames; a target needs at least {MIN_SECONDS:g} s of one person.")
    probe = FrameProbe(reader)
    with FaceTracker() as tracker:
        track = tracker.track(probe, fps=reader.fps, num_frames=len(reader), name=video, progress=progress)
    try:
        shots = split_shots(track.num_frames, find_cuts(np.array(probe.changes), track.landmarks, track.detected), shot)
    except ValueError as err:
        raise InputError(f"{video}: {err}; choose another --shot.") from None
    if shots.stop - shots.start < 20:
        raise InputError(f"{video}: its longest shot has {shots.stop - shots.start} frames; a target needs one shot.")
    kept = track.slice(shots.start, shots.stop)
    seq = fit_sequence(kept)
    return Footage(
        video=video,
        fps=reader.fps,
        width=reader.width,
        height=reader.height,
        frames=track.num_frames,
        shots=shots,
        sequence=seq,
        probe=probe,
        missing=int(kept.num_interpolated),
        other_faces=int(track.reassigned_frames),
    )


def head_turns(seq: FaceSequence) -> np.ndarray:
    """``[T]`` degrees each frame's head is turned from the clip's mean pose."""
    rot = axis_angle_to_matrix(seq.rotation)
    u, _, vt = np.linalg.svd(rot.mean(0))  # the chordal mean rotation: no axis-angle wrap-around
    mean = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
    return np.rad2deg(np.linalg.norm(matrix_to_axis_angle(rot @ mean.T), axis=-1))


def mouth_openings(seq: FaceSequence) -> np.ndarray:
    """``[T]`` inner-lip gap over mouth width of the fitted face."""
    return topo.mouth_opening(load_face_model().shape(seq.identity, seq.expression))


def assess(f: Footage) -> tuple[list[str], str | None]:
    """``(sentences, refusal)``: what the target will and will not do well, in plain words, and the one-line reason
    the footage cannot work (None when it can). Also fills ``f.figures`` with the measured values."""
    turns, mouth = head_turns(f.sequence), mouth_openings(f.sequence)
    x0, y0, x1, y1 = f.probe.picture_box()
    bars = (x1 - x0) < f.width - 4 or (y1 - y0) < f.height - 4
    f.figures = {
        "seconds": round(f.frames / f.fps, 1),
        "usable_seconds": round(f.usable_seconds, 1),
        "fps": round(f.fps, 2),
        "resolution": [f.width, f.height],
        "cuts": len(f.shots.cuts),
        "face_missing_frames": f.missing,
        "other_face_frames": f.other_faces,
        "black_bars": bool(bars),
        "head_turn_p95_deg": round(float(np.percentile(turns, 95)), 1),
        "mouth_opening_p95": round(float(np.percentile(mouth, 95)), 3),
        "wide_mouth_fraction": round(float((mouth > MOUTH_WIDE).mean()), 3),
    }
    g, say = f.figures, []
    say.append(
        f"{g['seconds']:g} s at {g['fps']:g} fps, {f.width} x {f.height}; "
        + (f"{g['cuts']} cut(s): the longest shot, {g['usable_seconds']:g} s, is used." if g["cuts"] else "one shot.")
    )
    if f.usable_seconds < MIN_SECONDS:
        return say, (
            f"{f.video}: only {f.usable_seconds:.1f} s of one continuous shot with a face; a target needs at least "
            f"{MIN_SECONDS:g} s (a minute or more is better)."
        )
    if round(f.usable_seconds) < GOOD_SECONDS:
        say.append("Under a minute of usable footage: expect a thinner target (more blur on faces it saw rarely).")
    if f.height < MIN_HEIGHT:
        say.append(f"Only {f.height} px high: the face will be small and soft.")
    if bars:
        say.append(f"Black bars around the picture (picture {x1 - x0} x {y1 - y0}): the crop stays inside them.")
    if f.missing:
        say.append(f"No face was found in {f.missing} frames of the shot (filled in from their neighbours).")
    if f.other_faces:
        say.append(f"Another face appears in {f.other_faces} frames; the target is the one tracked throughout.")
    if g["head_turn_p95_deg"] < TURN_NARROW_DEG:
        say.append(
            f"The head never turns more than {g['head_turn_p95_deg']:g} degrees: reenacted heads will be held close "
            "to frontal."
        )
    else:
        say.append(f"The head turns up to {g['head_turn_p95_deg']:g} degrees: reenacted heads can turn about as far.")
    if g["mouth_opening_p95"] < MOUTH_SPEECH:
        say.append("The mouth hardly opens: a source's speech will come out mumbled.")
    elif g["wide_mouth_fraction"] < 0.01:
        say.append(
            f"The mouth opens as in speech (to {g['mouth_opening_p95']:.2f} of its width) but never wide: a source's "
            "wide-open mouth (a shout, a yawn) comes out smaller or smeared."
        )
    else:
        say.append(f"The mouth opens wide in {100 * g['wide_mouth_fraction']:.0f}% of frames: wide mouths will follow.")
    return say, None
