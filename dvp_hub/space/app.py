"""The Gradio Space: `build_demo()` builds the Blocks without loading any model; `launch` serves it.

`spaces/app.py` and `dvp space` launch it. Heavy handlers go through `common.gpu`, ZeroGPU's ``spaces.GPU`` on
Hugging Face Spaces and a no-op elsewhere, so the same code runs on CPU.
"""

from __future__ import annotations

import logging
import threading

import gradio as gr

from ..perf import tune_allocator
from ..pipelines.finish import FrameFinisher
from ..pipelines.live_generator import compile_live_generator, int8_live_generator, live_model, offline_int8
from .common import CONSENT, EDIT_CONTROLS, get_pipeline, target_choices
from .handlers import edit, edit_sliders, model_card, reenact, verify
from .live_tab import build_live_tab

def build_demo():
    with gr.Blocks(title="Deep Video Portraits") as demo:
        gr.Markdown(
            "# Deep Video Portraits\nDrive a target person with your head pose, expression and gaze "
            "(Kim et al., SIGGRAPH 2018). **Every result is synthetic** and carries a visible label and "
            "metadata saying so."
        )
        with gr.Row():
            target = gr.Dropdown(target_choices(), value="demo", label="Target", elem_id="target")
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
                        gr.Slider(-2, 2, value=0, step=0.1, label=n.replace("_", " ").capitalize())  # set by frame
                        for n in EDIT_CONTROLS
                    ]
                image = gr.Image(label="Edited frame (synthetic)", elem_id="edit_image", type="numpy")
            inputs = [target, hub_id, frame, yaw, pitch, roll, gx, gy, *controls]
            for s in [frame, yaw, pitch, roll, gx, gy, *controls]:
                # drags, typed values and arrow keys all fire `input`; while a render runs, only the latest
                # value waits ("always_last"), so a long drag never floods the queue
                s.input(edit, inputs, image, api_name=False, trigger_mode="always_last", show_progress="hidden")
            demo.load(edit, inputs, image, api_name=False)
            # the sliders span what the target can render from the chosen frame (its trained poses and expressions)
            sliders = [yaw, pitch, roll, *controls]
            demo.load(edit_sliders, [target, hub_id, frame], sliders, api_name=False)
            for changed in (frame.release, target.change, hub_id.submit):  # a new frame or a new target
                changed(edit_sliders, [target, hub_id, frame], sliders, api_name=False).then(
                    edit, inputs, image, api_name=False
                )
        with gr.Tab("Live"):
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
        demo.load(lambda: gr.update(choices=target_choices()), None, target, api_name=False)  # targets trained since
    return demo


def _warm_up() -> None:
    """Quantize (int8, where this CPU has the engine) or else compile the bundled target's live generator, and
    quantize the generator and refiner the Reenact tab runs, in the background (seconds once), so that the first
    visitor of the Live or Reenact tab does not wait for it."""
    try:
        pipe = get_pipeline("demo")
        gen = live_model(pipe)  # what the Live tab's sessions run
        if int8_live_generator(pipe, gen) is None:
            compile_live_generator(pipe, gen)
    except Exception as err:  # noqa: BLE001 - the Live tab compiles (or falls back) on its first session
        logging.getLogger("dvp_hub").warning("live warm-up failed: %s", str(err).splitlines()[0][:160])
    try:
        pipe = get_pipeline("demo")
        gen8 = offline_int8(pipe, True)  # the Reenact tab's (the Live tab's model too, unless that one is light)
        if gen8 is not None:  # the refiner's detail branch, where and as a Reenact run's finisher quantizes it
            FrameFinisher(pipe, paste_back=False, watermark=False, invisible_watermark=False).use_int8(pipe, gen8)
    except Exception as err:  # noqa: BLE001 - the Reenact tab calibrates (or runs float) on its first visitor
        logging.getLogger("dvp_hub").warning("reenact warm-up failed: %s", str(err).splitlines()[0][:160])


def launch(host: str = "127.0.0.1", port: int = 7860, **kwargs):
    tune_allocator()  # the Space's program start (spaces/app.py or `dvp space`)
    get_pipeline("demo")  # load the bundled target before the first visitor arrives
    threading.Thread(target=_warm_up, name="dvp-warm-up", daemon=True).start()
    demo = build_demo()
    demo.queue(max_size=16, default_concurrency_limit=1)
    return demo.launch(server_name=host, server_port=port, **kwargs)
