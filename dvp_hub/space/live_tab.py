"""The Space's Live tab: webcam in, the target out, continuously.

Transport: Gradio's own webcam streaming (``gr.Image(sources=["webcam"], streaming=True).stream``): it
ships with Gradio and works on 127.0.0.1 and on Spaces without a TURN server; every frame is processed
by `LiveSession.push` on the server (tracking, fit, render, generator: tens of milliseconds on two cores).

One live session at a time on a CPU: the first visitor who streams holds it until they stop for
`IDLE_SECONDS`; others are told that the live mode is busy (the upload tab keeps working). The session
calibrates on its first second (a button redoes it); a recording is written on the wall clock's
timeline (the last output repeated until the next one), labelled and signed like every output.
"""

from __future__ import annotations

import collections
import os
import tempfile
import threading
import time

import gradio as gr
import numpy as np

from ..video import VideoWriter
from .common import CONSENT, get_pipeline, pick_target, user_error

IDLE_SECONDS = 5.0
RECORD_FPS = 20.0
STREAM_EVERY = 0.04  # seconds between webcam frames sent by the browser (at most 25 fps)


class _Live:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        if getattr(self, "session", None) is not None:
            self.session.close()  # its paste-back segmenter
        self.owner = None
        self.key = None
        self.session = None
        self.last_seen = 0.0
        self.outputs: collections.deque = collections.deque(maxlen=30)  # output times, for the fps
        self.latencies: collections.deque = collections.deque(maxlen=30)
        self.writer = None
        self.record_start = 0.0
        self.recorded = 0
        self.last_frame = None


LIVE = _Live()


def _owner(request) -> str:
    return getattr(request, "session_hash", None) or "local"


def _status(live: _Live) -> str:
    times = list(live.outputs)
    fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
    lat = 1000 * float(np.median(live.latencies)) if live.latencies else 0.0
    text = f"{fps:.1f} fps · processing latency {lat:.0f} ms"
    if live.session is not None and live.session.calibrating:
        text += " · calibrating: look into the camera with a relaxed, neutral face"
    if live.writer is not None:
        text += f" · recording {live.recorded / RECORD_FPS:.1f} s"
    return text


def live_frame(frame, target_choice, hub_id, mode, consent, request: gr.Request = None):
    """One webcam frame in, the target's frame and a status line out."""
    if frame is None:
        return None, "Start the camera."
    if not consent:
        return None, "Tick the consent box first: the result is synthetic and labelled so."
    me, now = _owner(request), time.perf_counter()
    live = LIVE
    with live.lock:
        if live.owner not in (None, me) and now - live.last_seen < IDLE_SECONDS:
            return None, "The live mode is busy: another visitor is using it. The Reenact tab keeps working."
        key = (pick_target(target_choice, hub_id), mode or "dub")
        if live.owner != me or live.key != key or live.session is None:
            if live.writer is not None:
                live.writer.abort()
            live.reset()
            live.session = get_pipeline(key[0]).live(fps=1 / STREAM_EVERY, mode=key[1])
            live.owner, live.key = me, key
        live.last_seen = now
        session = live.session
    frame = np.ascontiguousarray(frame[..., :3])
    out = session.push(frame, t=now)
    done = time.perf_counter()
    with live.lock:
        live.latencies.append(done - now)
        live.outputs.append(done)
        live.last_frame = out
        if live.writer is not None:  # on the wall clock's timeline: repeat the output until it is due
            due = int((done - live.record_start) * RECORD_FPS) + 1
            while live.recorded < due:
                live.writer.write(out)
                live.recorded += 1
        return out, _status(live)


def live_calibrate(request: gr.Request = None) -> str:
    with LIVE.lock:
        if LIVE.session is None or LIVE.owner != _owner(request):
            return "Start the camera first."
        LIVE.session.recalibrate()
        return "Calibrating again: look into the camera with a relaxed, neutral face."


def live_record_start(request: gr.Request = None) -> str:
    with LIVE.lock:
        if LIVE.session is None or LIVE.owner != _owner(request):
            return "Start the camera first."
        if LIVE.writer is None:
            folder = tempfile.mkdtemp(prefix="dvp-live-")
            os.chmod(folder, 0o755)
            pipe = LIVE.session.pipe
            LIVE.writer = VideoWriter(
                os.path.join(folder, "live.mp4"),
                RECORD_FPS,
                provenance=pipe.provenance(mode="live", source="webcam"),
                low_latency=True,
            )
            LIVE.writer.open(*LIVE.session.output_size)  # here, not in the frame path
            LIVE.record_start, LIVE.recorded = time.perf_counter(), 0
        return "Recording: press Stop to get the video."


def live_record_stop(request: gr.Request = None):
    """Close the recording: the labelled, signed mp4 (or an error when nothing was recorded)."""
    with LIVE.lock:
        writer = LIVE.writer if LIVE.owner == _owner(request) else None
        if writer is None:
            raise user_error("Nothing is being recorded: press Record first.")
        LIVE.writer = None
        if LIVE.recorded == 0 and LIVE.last_frame is not None:
            writer.write(LIVE.last_frame)
        if writer.frames_written == 0:
            writer.abort()
            raise user_error("The recording is empty: keep the camera running while recording.")
        writer.close()
        return str(writer.path), f"Recorded {writer.frames_written / RECORD_FPS:.1f} s."


def build_live_tab(target, hub_id) -> None:
    """The Live tab's components and events (inside ``gr.Blocks``)."""
    gr.Markdown(
        "Look into your webcam and the target follows your head, expression and gaze, live. The first second "
        "calibrates (keep a relaxed, neutral face). One live visitor at a time."
    )
    with gr.Row():
        with gr.Column():
            cam = gr.Image(sources=["webcam"], streaming=True, label="Your camera", elem_id="live_cam")
            mode = gr.Radio(
                ["dub", "reenact"],
                value="dub",
                label="Mode (dub: the target keeps its own head motion, its face follows yours: the demo's "
                "cleanest; reenact: the head follows yours too)",
            )
            consent = gr.Checkbox(label=CONSENT, value=False, elem_id="live_consent")
            with gr.Row():
                calibrate = gr.Button("Calibrate", elem_id="live_calibrate")
                rec = gr.Button("Record", elem_id="live_record")
                stop = gr.Button("Stop recording", elem_id="live_stop")
        with gr.Column():
            out = gr.Image(label="Target (synthetic)", elem_id="live_out", streaming=True)
            status = gr.Markdown(elem_id="live_status")
            recording = gr.File(label="Recording (synthetic, labelled)", elem_id="live_recording")
    cam.stream(
        live_frame,
        [cam, target, hub_id, mode, consent],
        [out, status],
        stream_every=STREAM_EVERY,
        concurrency_limit=1,
        concurrency_id="live",
        show_progress="hidden",
        api_name="live_frame",
    )
    calibrate.click(live_calibrate, None, status, api_name=False)
    rec.click(live_record_start, None, status, api_name=False)
    stop.click(live_record_stop, None, [recording, status], api_name=False)
