"""The Gradio Space: reenactment in the browser (thin functions that match the UI controls).

`build_demo()` builds the Blocks without loading any model; `spaces/app.py` and `dvp space` launch
it. Heavy functions go through `gpu()`, which is ZeroGPU's ``spaces.GPU`` on Hugging Face Spaces and
a no-op elsewhere, so the same code runs on CPU.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time

import cv2
import gradio as gr
import numpy as np

from .errors import DVPError
from .pipelines.pipeline_dvp import DeepVideoPortraitPipeline, resolve_target
from .video import current_umask

# Imported here, in the main thread: the handlers run in Gradio's worker threads, and two of them importing
# diffusers for the first time at once can see a half-initialised module.

MAX_SECONDS = float(os.environ.get("DVP_MAX_SECONDS", 60))
MAX_MB = float(os.environ.get("DVP_MAX_MB", 200))
TARGETS_DIR = os.environ.get("DVP_TARGETS_DIR", "")
CONSENT = "I have the right to use this video, and I understand the result is synthetic and labelled as such."
EDIT_CONTROLS = ("jaw_open", "smile", "brows", "blink")

_PIPES: dict = {}
_LOCK = threading.Lock()


def gpu(fn=None, **kwargs):
    """ZeroGPU's decorator when available (Hugging Face Spaces), else the function itself."""
    try:
        import spaces  # type: ignore

        deco = spaces.GPU(**kwargs)
    except Exception:  # noqa: BLE001 - not on a Space

        def deco(f):
            return f

    return deco(fn) if fn is not None else deco


def user_error(message: str) -> gr.Error:
    """A message for the visitor: shown in the page, no traceback in the server log (unless DVP_VERBOSE)."""
    from .logs import is_verbose

    return gr.Error(message, print_exception=is_verbose())


def target_choices() -> list[str]:
    """The bundled demo target plus pipeline folders under $DVP_TARGETS_DIR."""
    out = ["demo"]
    if TARGETS_DIR and os.path.isdir(TARGETS_DIR):
        for d in sorted(os.listdir(TARGETS_DIR)):
            if os.path.isfile(os.path.join(TARGETS_DIR, d, "model_index.json")):
                out.append(os.path.join(TARGETS_DIR, d))
    return out


def get_pipeline(target: str):
    """Load a target once per process (thread-safe; diffusers' loading bar off, it clashes with gr.Progress)."""
    from diffusers.utils import logging as dlogging

    with _LOCK:
        if target not in _PIPES:
            dlogging.disable_progress_bar()
            try:
                _PIPES[target] = DeepVideoPortraitPipeline.from_pretrained(target)
            finally:
                dlogging.enable_progress_bar()
        return _PIPES[target]


def _pick_target(choice: str, hub_id: str) -> str:
    return hub_id.strip() if hub_id and hub_id.strip() else (choice or "demo")


def check_source(path: str | None) -> None:
    """Refuse missing, oversized, overlong or unreadable uploads with a message (raises DVPError)."""
    from .video import probe_video

    if not path:
        raise DVPError("Upload or record a source video first.")
    mb = os.path.getsize(path) / 2**20
    if mb > MAX_MB:
        raise DVPError(f"The video is {mb:.0f} MB; the limit is {MAX_MB:.0f} MB. Upload a shorter or smaller clip.")
    info = probe_video(path)
    if info.duration > MAX_SECONDS:
        raise DVPError(
            f"The video lasts {info.duration:.3g} s; the limit is {MAX_SECONDS:g} s. Trim it and try again."
        )


SIDE_BY_SIDE_HEIGHT = 360  # px


def side_by_side(source_video: str, result_video: str, parameters, pipe, output: str) -> str:
    """source | diffuse conditioning | result (full frame, same height), streamed chunk by chunk."""
    from .provenance.watermark import embed
    from .render.conditioning import ConditioningRenderer
    from .video import VideoReader, VideoWriter

    size = SIDE_BY_SIDE_HEIGHT  # every panel this tall; the result keeps its aspect ratio
    renderer = ConditioningRenderer()
    albedo = pipe.target.albedo.numpy()
    provenance = pipe.provenance(source=source_video)
    with VideoWriter(output, parameters.fps, audio_from=source_video, provenance=provenance) as writer:
        src_iter = iter(VideoReader(source_video, size=(size, size)))
        start = 0
        for chunk in VideoReader(result_video).chunks(32):
            cond = renderer.render(
                parameters, pipe.target.crop, size, frames=slice(start, start + len(chunk)), albedo=albedo
            )
            diffuse = ((cond[:, :3].permute(0, 2, 3, 1).numpy() + 1) * 127.5).astype(np.uint8)
            for i, res in enumerate(chunk):
                src = next(src_iter, np.zeros((size, size, 3), np.uint8))
                w = int(round(res.shape[1] * size / res.shape[0] / 2)) * 2  # even: H.264 needs it
                res = cv2.resize(res, (w, size), interpolation=cv2.INTER_AREA)
                writer.write(embed(np.concatenate([src, diffuse[i], res], 1)))
            start += len(chunk)
    return output


@gpu(duration=120)
def reenact(source_video, target_choice, hub_id, mode, transfer, consent, progress=gr.Progress(track_tqdm=True)):
    """The Reenact tab: returns (result video, side-by-side video, summary markdown).

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
        pipe = get_pipeline(_pick_target(target_choice, hub_id))
        out_dir = tempfile.mkdtemp(prefix="dvp-")
        os.chmod(out_dir, 0o777 & ~current_umask())  # readable by others, as any folder the user makes
        result = os.path.join(out_dir, "reenacted.mp4")
        t0 = time.perf_counter()
        out = pipe(source_video=source_video, mode=mode, transfer=tuple(transfer), output_video=result)
        sbs = side_by_side(source_video, result, out.parameters, pipe, os.path.join(out_dir, "side_by_side.mp4"))
        st = out.stats
        summary = (
            f"**{st['frames']} frames** tracked ({st['interpolated_frames']} interpolated, faces found in "
            f"{st['frames'] - st['interpolated_frames']}); neutral source frame {st['source_reference_frame']}; "
            f"{st['fps']:.1f} frames/s ({time.perf_counter() - t0:.1f} s). The video is synthetic and "
            "labelled so."
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
        return result, sbs, summary
    except BaseException as err:
        if out_dir is not None:  # nothing half-written stays behind
            shutil.rmtree(out_dir, ignore_errors=True)
        if isinstance(err, DVPError):
            raise user_error(_user_names(str(err), source_video)) from None
        raise


def _user_names(message: str, upload: str | None) -> str:
    """The message with Gradio's temporary upload path replaced by the file's own name (Gradio keeps the
    uploaded file's original name as the last part of its cache path)."""
    if upload:
        message = message.replace(str(upload), os.path.basename(str(upload)))
    return message


@gpu(duration=20)
def edit(target_choice, hub_id, frame, yaw, pitch, roll, gaze_x, gaze_y, *controls):
    try:
        pipe = get_pipeline(_pick_target(target_choice, hub_id))
        frame = int(min(frame, pipe.target.config.num_frames - 1))
        expression = {k: float(v) for k, v in zip(EDIT_CONTROLS, controls) if v}
        return pipe.edit(frame, yaw=yaw, pitch=pitch, roll=roll, expression=expression, gaze=(gaze_x, gaze_y))
    except DVPError as err:
        raise user_error(str(err)) from None


def model_card(target_choice, hub_id) -> str:
    try:
        folder = resolve_target(_pick_target(target_choice, hub_id))
    except DVPError as err:
        raise user_error(str(err)) from None
    path = os.path.join(folder, "README.md")
    if not os.path.isfile(path):
        return "This target has no model card."
    text = open(path, encoding="utf-8").read()
    return text.split("---", 2)[2] if text.startswith("---") else text


def verify(file) -> str:
    """The Verify tab: the `dvp verify` report of an uploaded video or image, as Markdown."""
    from .provenance.verify import format_report, verify_file

    if not file:
        raise user_error("Upload a video or an image to check.")
    try:
        report = verify_file(file)
    except DVPError as err:
        raise user_error(_user_names(str(err), file)) from None
    lines = _user_names(format_report(report), file).splitlines()
    return f"**{lines[0]}**\n\n" + "\n".join(f"- {ln.strip()}" for ln in lines[1:])


def build_demo():
    with gr.Blocks(title="Deep Video Portraits") as demo:
        gr.Markdown(
            "# Deep Video Portraits\nDrive a target person with your head pose, expression and gaze "
            "(Kim et al., SIGGRAPH 2018). **Every result is synthetic** and carries a visible label and "
            "metadata saying so."
        )
        with gr.Row():
            target = gr.Dropdown(target_choices(), value="demo", label="Target", allow_custom_value=True)
            hub_id = gr.Textbox(label="…or a Hub repo id (owner/name)", placeholder="optional")
        with gr.Tab("Reenact"):
            with gr.Row():
                with gr.Column():
                    source = gr.Video(sources=["upload", "webcam"], label="Source video", elem_id="source")
                    mode = gr.Radio(["reenact", "dub"], value="reenact", label="Mode")
                    transfer = gr.CheckboxGroup(
                        ["pose", "expression", "gaze"], value=["pose", "expression", "gaze"], label="Transfer"
                    )
                    consent = gr.Checkbox(label=CONSENT, value=False, elem_id="consent")
                    run = gr.Button("Reenact", variant="primary", elem_id="run")
                with gr.Column():
                    result = gr.Video(label="Result (synthetic)", elem_id="result")
                    sbs = gr.Video(label="Source | conditioning | result", elem_id="sbs")
                    summary = gr.Markdown(elem_id="summary")
            run.click(
                reenact, [source, target, hub_id, mode, transfer, consent], [result, sbs, summary], api_name="reenact"
            )
        with gr.Tab("Edit"):
            with gr.Row():
                with gr.Column():
                    frame = gr.Slider(0, 1000, value=100, step=1, label="Target frame")
                    yaw = gr.Slider(-30, 30, value=0, step=1, label="Yaw", elem_id="yaw")
                    pitch = gr.Slider(-20, 20, value=0, step=1, label="Pitch")
                    roll = gr.Slider(-20, 20, value=0, step=1, label="Roll")
                    gx = gr.Slider(-0.15, 0.15, value=0, step=0.01, label="Gaze left/right")
                    gy = gr.Slider(-0.1, 0.1, value=0, step=0.01, label="Gaze up/down")
                    controls = [
                        gr.Slider(-2, 2, value=0, step=0.1, label=n.replace("_", " ").capitalize())
                        for n in EDIT_CONTROLS
                    ]
                image = gr.Image(label="Edited frame (synthetic)", elem_id="edit_image", type="numpy")
            inputs = [target, hub_id, frame, yaw, pitch, roll, gx, gy, *controls]
            for s in [frame, yaw, pitch, roll, gx, gy, *controls]:
                # drags, typed values and arrow keys all fire `input`; while a render runs, only the latest
                # value waits ("always_last"), so a long drag never floods the queue
                s.input(edit, inputs, image, api_name=False, trigger_mode="always_last", show_progress="hidden")
            demo.load(edit, inputs, image, api_name=False)
        with gr.Tab("Live"):
            from .space_live import build_live_tab

            build_live_tab(target, hub_id)
        with gr.Tab("Verify"):
            gr.Markdown(
                "Check whether a video or an image was made with dvp_hub: Content Credentials (C2PA), the "
                "invisible watermark (it survives crops, resizes and re-encoding), the visible label and the "
                "metadata."
            )
            checked = gr.File(label="Video or image", file_types=["video", "image"], elem_id="verify_file")
            check = gr.Button("Verify", elem_id="verify")
            verdict = gr.Markdown(elem_id="verdict")
            check.click(verify, [checked], verdict, api_name="verify")
        with gr.Tab("Targets"):
            card = gr.Markdown(elem_id="card")
            target.change(model_card, [target, hub_id], card, api_name=False)
            demo.load(model_card, [target, hub_id], card, api_name=False)
    return demo


def _warm_live() -> None:
    """Quantize (int8, where this CPU has the engine) or else compile the bundled target's live generator in the
    background (seconds once), so that the first visitor of the Live tab does not wait for it."""
    from .pipelines.live import compile_live_generator, int8_live_generator

    try:
        pipe = get_pipeline("demo")
        if int8_live_generator(pipe) is None:
            compile_live_generator(pipe)
    except Exception as err:  # noqa: BLE001 - the Live tab compiles (or falls back) on its first session
        logging.getLogger("dvp_hub").warning("live warm-up failed: %s", str(err).splitlines()[0][:160])


def launch(host: str = "127.0.0.1", port: int = 7860, **kwargs):
    get_pipeline("demo")  # load the bundled target before the first visitor arrives
    threading.Thread(target=_warm_live, name="dvp-warm-live", daemon=True).start()
    demo = build_demo()
    demo.queue(max_size=16, default_concurrency_limit=1)
    return demo.launch(server_name=host, server_port=port, **kwargs)
