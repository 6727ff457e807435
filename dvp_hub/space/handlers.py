"""The Space's Reenact, Edit, Verify and Targets handlers (thin functions that match the UI controls)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import cv2
import gradio as gr
import numpy as np

from ..errors import DVPError
from ..pipelines.finish import tensor_to_uint8
from ..pipelines.pipeline_dvp import resolve_target
from ..provenance.verify import format_report, verify_file
from ..provenance.watermark import embed
from ..video import VideoReader, VideoWriter, current_umask
from ..video_probe import probe_video
from .common import (
    EDIT_CONTROLS,
    POSE_CONTROLS,
    check_source,
    get_pipeline,
    gpu,
    pick_target,
    user_error,
    user_names,
)

SIDE_BY_SIDE_HEIGHT = 360  # px
PANEL_QUALITY = 90  # JPEG quality of the diffuse panels kept in memory during the pass


class SideBySide:
    """source | diffuse conditioning | result (full frame, same height) as a second labelled video, in two halves
    so that the visitor gets the result first: during the pipeline's pass, ``__call__`` (its ``callback_on_frame``)
    keeps each frame's diffuse panel at the render's size, JPEG-compressed in memory (a few kB a frame); once the
    result is written, `write` decodes the source and the result at the panels' height, enlarges the diffuse panels
    to it and encodes the three side by side.
    """

    def __init__(self, source_video: str, pipe, output: str):
        self.size = SIDE_BY_SIDE_HEIGHT  # every panel this tall; the result keeps its aspect ratio
        self.source_video, self.pipe, self.path = source_video, pipe, output
        self.panels: list[np.ndarray] = []  # JPEG bytes of each frame's diffuse panel, in frame order

    def __call__(self, index: int, frame: np.ndarray, cond) -> None:
        diffuse = tensor_to_uint8(cond[:3])  # enlarged in `write`, after the result: less work during the pass
        self.panels.append(cv2.imencode(".jpg", diffuse[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, PANEL_QUALITY])[1])

    def write(self, result_video: str) -> str:
        """The side-by-side video of ``result_video`` (the pipeline's finished output); nothing is left on disk
        if it fails."""
        size, info = self.size, probe_video(result_video)
        w = int(round(info.width * size / info.height / 2)) * 2  # even: H.264 needs it
        sources = iter(VideoReader(self.source_video, size=(size, size)))  # generators: close() stops the decoders
        results = iter(VideoReader(result_video, size=(w, size)))
        provenance = self.pipe.provenance(source=self.source_video)
        writer = VideoWriter(self.path, info.fps, audio_from=self.source_video, provenance=provenance)
        try:
            for panel in self.panels:
                src = next(sources, None)
                src = np.zeros((size, size, 3), np.uint8) if src is None else src
                res = next(results, None)
                res = np.zeros((size, w, 3), np.uint8) if res is None else res
                diffuse = cv2.resize(cv2.imdecode(panel, cv2.IMREAD_COLOR)[..., ::-1], (size, size))
                writer.write(embed(np.concatenate([src, diffuse, res], 1)))
            writer.close()
        except BaseException:
            writer.abort()
            raise
        finally:
            sources.close()
            results.close()
        return self.path


@gpu(duration=120)
def reenact(source_video, target_choice, hub_id, mode, transfer, consent, progress=gr.Progress(track_tqdm=True)):
    """The Reenact tab, a generator: yields (result video, None, summary markdown) as soon as the result is
    written, then (result video, side-by-side video, summary) once the side-by-side is (`SideBySide`).

    ``progress`` picks up the pipeline's progress bars (tracking, then rendering + generating).
    """
    out_dir = None
    try:
        if not source_video:
            raise DVPError("Upload or record a source video first.")
        if not consent:
            raise DVPError("Please confirm that you have the right to use this video (tick the box).")
        check_source(source_video)
        if not transfer:
            raise DVPError("Choose at least one of pose, expression and gaze to transfer.")
        pipe = get_pipeline(pick_target(target_choice, hub_id))
        out_dir = tempfile.mkdtemp(prefix="dvp-")
        os.chmod(out_dir, 0o777 & ~current_umask())  # readable by others, as any folder the user makes
        result = os.path.join(out_dir, "reenacted.mp4")
        t0 = time.perf_counter()
        panels = SideBySide(source_video, pipe, os.path.join(out_dir, "side_by_side.mp4"))
        out = pipe(
            source_video=source_video,
            mode=mode,
            transfer=tuple(transfer),
            output_video=result,
            callback_on_frame=panels,
            int8=True,  # calibrated at the Space's start (`app._warm_up`), once a target
        )
        summary = _summary(out.stats, time.perf_counter() - t0)
        yield result, None, summary + "\n\n*The side-by-side video follows in a few seconds.*"
        yield result, panels.write(result), summary
    except BaseException as err:
        if out_dir is not None:  # nothing half-written stays behind
            shutil.rmtree(out_dir, ignore_errors=True)
        if isinstance(err, DVPError):
            raise user_error(user_names(str(err), source_video)) from None
        raise


def _summary(st: dict, seconds: float) -> str:
    """The Reenact tab's summary of a run's ``stats``, as Markdown."""
    summary = (
        f"**{st['frames']} frames** tracked ({st['interpolated_frames']} interpolated, faces found in "
        f"{st['frames'] - st['interpolated_frames']}); neutral source frame {st['source_reference_frame']}; "
        f"{st['fps']:.1f} frames/s ({seconds:.1f} s). The video is synthetic and labelled so."
    )
    if st["frames_beyond_target_pose_range"]:
        summary += (
            f"\n\n**{st['frames_beyond_target_pose_range']} frames** turn the head up to "
            f"{st['max_pose_offset_deg']:g} degrees, beyond the {st['target_pose_range_deg']:g} degrees this "
            "target was trained on: those frames are extrapolated and look worse."
        )
    if st.get("frames_pose_limited"):
        summary += (
            f"\n\nIn **{st['frames_pose_limited']} frames** the head moved less than the source's, to stay near "
            "the poses this target was trained on."
        )
    if st.get("frames_expression_limited"):
        summary += (
            f"\n\nIn **{st['frames_expression_limited']} frames** the face made a smaller expression than the "
            "source's, to stay near the expressions this target was trained on."
        )
    return summary


@gpu(duration=20)
def edit(target_choice, hub_id, frame, yaw, pitch, roll, gaze_x, gaze_y, *controls):
    try:
        pipe = get_pipeline(pick_target(target_choice, hub_id))
        frame = int(min(frame, pipe.target.config.num_frames - 1))
        expression = {k: float(v) for k, v in zip(EDIT_CONTROLS, controls) if v}
        return pipe.edit(frame, yaw=yaw, pitch=pitch, roll=roll, expression=expression, gaze=(gaze_x, gaze_y))
    except DVPError as err:
        raise user_error(str(err)) from None


def edit_sliders(target_choice, hub_id, frame):
    """The Edit tab's yaw / pitch / roll sliders, then its expression sliders (`EDIT_CONTROLS`), set to what the
    target can render from ``frame`` (its trained poses and expressions, `DeepVideoPortraitPipeline.edit_ranges`),
    each back at 0."""
    try:
        pipe = get_pipeline(pick_target(target_choice, hub_id))
        ranges = pipe.edit_ranges(int(min(frame, pipe.target.config.num_frames - 1)))
    except DVPError as err:
        raise user_error(str(err)) from None

    def slider(lo, hi, step):  # back at 0 (the frame as trained); never an empty range
        lo, hi = round(lo / step) * step, round(hi / step) * step
        return gr.update(minimum=min(lo, -step), maximum=max(hi, step), value=0)

    return [slider(*ranges[k], 1) for k in POSE_CONTROLS] + [slider(*ranges[k], 0.1) for k in EDIT_CONTROLS]


def model_card(target_choice, hub_id) -> str:
    try:
        folder = resolve_target(pick_target(target_choice, hub_id), local_paths=False)
    except DVPError as err:
        raise user_error(str(err)) from None
    path = os.path.join(folder, "README.md")
    if not os.path.isfile(path):
        return "This target has no model card."
    text = open(path, encoding="utf-8").read()
    return text.split("---", 2)[2] if text.startswith("---") else text


def verify(file) -> str:
    """The Verify tab: the `dvp verify` report of an uploaded video or image, as Markdown."""

    if not file:
        raise user_error("Upload a video or an image to check.")
    try:
        report = verify_file(file)
    except DVPError as err:
        raise user_error(user_names(str(err), file)) from None
    lines = user_names(format_report(report), file).splitlines()
    return f"**{lines[0]}**\n\n" + "\n".join(f"- {ln.strip()}" for ln in lines[1:])
