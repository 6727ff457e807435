"""Tracking a clip in two halves side by side: the face mesh runs on one core at a time, so a long clip's two
halves, each followed by its own `FaceTracker` in its own thread, take 60-75% of the time on two cores.

The second half's tracker starts `LEAD` frames before it, from a fresh detection, and those frames are dropped: a
tracker started afresh settles on the same landmarks as one that has followed the face all along within a few
frames (on a 1280 px portrait its first frame is 2.4 px off on average, the fifth 0.2 px), so there is no jump at the
seam. Where the second half's first face is not the one the first half ended on (another
person, a jump), one half follows a small face and the other does not, or the two readers disagree on the frame at
the seam (a clip whose timestamps have gaps can count its frames otherwise when read from the middle), the second
half is followed again by the first half's tracker, from where it stopped, on the frames a reader from the start
gives: then the track is the one a single tracker gives.
"""

from __future__ import annotations

import contextvars
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..video import VideoReader
from .tracker import FaceTrack, FaceTracker, Following, continues

SPLIT_MIN_FRAMES = 200  # shorter clips are tracked in one piece (two trackers' start costs ~0.3 s)
LEAD = 15  # frames the second half's tracker follows before the seam, dropped: it has settled by then


def track_reader(reader: VideoReader, progress=None) -> FaceTrack:
    """The `FaceTrack` of ``reader``'s frames (``progress(done, total)`` as frames are tracked). A constant-rate clip
    of `SPLIT_MIN_FRAMES` frames or more, on a machine with two cores or more for this process, is tracked in two
    halves side by side (see the module docstring); others, and halves that do not join, as one tracker would. An
    error in either half (an interrupt included) stops the other one at its next frame."""
    n = len(reader)
    if n < SPLIT_MIN_FRAMES or reader.info.variable_rate or len(os.sched_getaffinity(0)) < 2:
        with FaceTracker() as tracker:
            return tracker.track(reader, fps=reader.fps, num_frames=n, name=reader.path, progress=progress)
    half, stop, seam = n // 2, threading.Event(), {}
    first = VideoReader(reader.path, max_frames=half, size=reader.size, start=reader.start)
    more = None if reader.max_frames is None else reader.max_frames - half + LEAD  # to the end, as `reader` reads
    second = VideoReader(reader.path, max_frames=more, size=reader.size, start=reader.start + half - LEAD)
    done, lock = [0, 0], threading.Lock()

    def tick(part: int, skip: int = 0):
        def report(count: int, _total) -> None:
            if stop.is_set():
                raise _Stopped
            with lock:
                done[part] = max(0, count - skip)
                if progress is not None and count > skip:
                    progress(sum(done), n)

        return report

    def follow_second() -> Following:
        try:
            with FaceTracker() as tracker:
                return settled(tracker.follow(_keeping(second, LEAD - 1, seam, 1), Following(), tick(1, LEAD)), LEAD)
        except BaseException:
            stop.set()
            raise

    with ThreadPoolExecutor(1) as pool, FaceTracker() as tracker:
        later = pool.submit(contextvars.copy_context().run, follow_second)  # Gradio's progress reads the context
        try:
            state = tracker.follow(_keeping(first, half - 1, seam, 0), Following(), tick(0))
            rest = later.result()
        except _Stopped:
            later.result()  # the second half's error
            raise
        except BaseException:
            stop.set()
            raise
        # the same frame on both sides of the seam (a clip with timestamp gaps may count frames otherwise) and the
        # same face: joined; else the rest followed again from where the first half stopped, frames as `reader` reads
        if len(seam) == 2 and np.array_equal(seam[0], seam[1]) and joins(state, rest):
            state = joined(state, rest)
        else:
            done[1] = 0
            state = tracker.follow(itertools.islice(reader, half, None), state, tick(1))
        return tracker.finish(state, reader.fps, reader.path)


class _Stopped(Exception):
    """The other half failed: this one stops (the other half's error is the one raised)."""


def _keeping(frames, index: int, box: dict, key: int):
    """``frames``, keeping the one at ``index`` in ``box[key]``."""
    for i, frame in enumerate(frames):
        if i == index:
            box[key] = frame
        yield frame


def settled(state: Following, lead: int) -> Following:
    """``state`` without its first ``lead`` frames (a tracker's start, followed only to settle it)."""
    state.lms, state.cols = state.lms[lead:], state.cols[lead:]
    state.last_idx -= lead
    return state


def joins(before: Following, after: Following) -> bool:
    """Whether ``after``'s first face continues ``before``'s last one (the tracker's own test for a jump,
    `tracker.continues`), both in the same mode (full frame or small face). Without a face on either side there is
    nothing to follow across the seam: True."""
    if before.small_mode != after.small_mode:
        return False
    first = next((lm for lm in after.lms if lm is not None), None)
    return before.last is None or first is None or continues(first, before.last)


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
