"""Tracking a clip in two halves side by side: the face mesh runs on one core at a time, so a long clip's two
halves, each followed by its own `FaceTracker` in its own thread, take about half the time on two cores.

The second half's tracker starts `LEAD` frames before it, from a fresh detection, and those frames are dropped: a
tracker started afresh settles on the same landmarks as one that has followed the face all along within a few
frames (on a 1280 px portrait its first frame is 2.4 px off on average, the fifth 0.2 px), so there is no jump at the
seam. Where the second half's first face is not the one the first half ended on (another
person, a jump), or one half follows a small face and the other does not, the second half is followed again by the
first half's tracker, from where it stopped: then the track is the one a single tracker gives.
"""

from __future__ import annotations

import contextvars
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..video import VideoReader
from .tracker import FaceTrack, FaceTracker, Following, _center_size

SPLIT_MIN_FRAMES = 200  # shorter clips are tracked in one piece (two trackers' start costs ~0.3 s)
LEAD = 15  # frames the second half's tracker follows before the seam, dropped: it has settled by then


def track_reader(reader: VideoReader, progress=None) -> FaceTrack:
    """The `FaceTrack` of ``reader``'s frames (``progress(done, total)`` as frames are tracked). A constant-rate clip
    of `SPLIT_MIN_FRAMES` frames or more, on a machine with two cores or more, is tracked in two halves side by side
    (see the module docstring); others, and tracks that do not join, as one tracker would."""
    n = len(reader)
    if n < SPLIT_MIN_FRAMES or reader.info.variable_rate or (os.cpu_count() or 1) < 2:
        with FaceTracker() as tracker:
            return tracker.track(reader, fps=reader.fps, num_frames=n, name=reader.path, progress=progress)
    half = n // 2
    first = VideoReader(reader.path, max_frames=half, size=reader.size, start=reader.start)
    second = VideoReader(reader.path, max_frames=n - half + LEAD, size=reader.size, start=reader.start + half - LEAD)
    done, lock = [0, 0], threading.Lock()

    def tick(part: int):
        def report(count: int, _total) -> None:
            with lock:
                done[part] = count
                if progress is not None:
                    progress(sum(done), n)

        return report

    def follow_second() -> Following:
        report = tick(1)
        with FaceTracker() as tracker:
            state = tracker.follow(second, Following(), lambda count, total: count > LEAD and report(count - LEAD, total))
        return settled(state, LEAD)

    with ThreadPoolExecutor(1) as pool, FaceTracker() as tracker:
        later = pool.submit(contextvars.copy_context().run, follow_second)  # Gradio's progress reads the context
        state = tracker.follow(first, Following(), tick(0))
        rest = later.result()
        if joins(state, rest):
            state = joined(state, rest)
        else:  # followed again, on from where the first half stopped
            rest = VideoReader(reader.path, max_frames=n - half, size=reader.size, start=reader.start + half)
            state = tracker.follow(rest, state)
        return tracker.finish(state, reader.fps, reader.path)


def settled(state: Following, lead: int) -> Following:
    """``state`` without its first ``lead`` frames (a tracker's start, followed only to settle it)."""
    state.lms, state.cols = state.lms[lead:], state.cols[lead:]
    state.last_idx -= lead
    return state


def joins(before: Following, after: Following) -> bool:
    """Whether ``after``'s first face continues ``before``'s last one (the tracker's own test for a jump: the centre
    within 0.6 of the face's size, the size within half to twice), both in the same mode (full frame or small face).
    Without a face on either side there is nothing to follow across the seam: True."""
    if before.small_mode != after.small_mode:
        return False
    first = next((lm for lm in after.lms if lm is not None), None)
    if before.last is None or first is None:
        return True
    centre, size = _center_size(first)
    last_centre, last_size = before.last
    return bool(np.linalg.norm(centre - last_centre) <= 0.6 * last_size and 0.5 < size / last_size < 2.0)


def joined(before: Following, after: Following) -> Following:
    """One `Following` of ``before``'s frames then ``after``'s (``after``'s last face and crop)."""
    return Following(
        lms=before.lms + after.lms,
        cols=before.cols + after.cols,
        last=after.last,
        last_idx=len(before.lms) + after.last_idx,
        roi=after.roi,
        small_mode=before.small_mode or after.small_mode,
        reassigned=before.reassigned + after.reassigned,
        misses_since_search=after.misses_since_search,
        busy=before.busy + after.busy,
        width=after.width or before.width,
        height=after.height or before.height,
    )
