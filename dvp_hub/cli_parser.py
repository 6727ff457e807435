"""The ``dvp`` command line's arguments: one function per command, so that each stays readable.

`build_parser` sets ``args.command``; `cli.COMMANDS` maps it to the function that runs it.
"""

from __future__ import annotations

import argparse


def _crop_only(p) -> None:
    p.add_argument(
        "--crop-only",
        action="store_true",
        help="return the generated crop instead of the target's full frame at its native size",
    )


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="dvp", description="Deep Video Portraits: tracking, rendering, reenactment.")
    ap.add_argument(
        "--verbose",
        action="store_true",
        help="also show the libraries' own log lines (mediapipe, TensorFlow Lite, imageio); same as DVP_VERBOSE=1",
    )
    sub = ap.add_subparsers(dest="command", required=True)
    _track(sub)
    _render(sub)
    _reenact(sub)
    _live(sub)
    _demo(sub)
    _evaluate(sub)
    _bench(sub)
    _verify(sub)
    _space_export(sub)
    _space(sub)
    _train(sub)
    _push(sub)
    return ap


def _train(sub) -> None:
    p = sub.add_parser("train", help="a target of your own: footage check, dataset, training, export, card")
    p.add_argument("video", help="a video of the target person speaking (one shot, one face, a minute or more)")
    p.add_argument("--check", action="store_true", help="only check the footage and say what to expect")
    p.add_argument("--name", default=None, help="the target's name (default: the video's file name)")
    p.add_argument("--output", "-o", default=None, help="the target folder (default: NAME in the targets folder)")
    p.add_argument("--targets-dir", default=None, help="the targets folder (default: $DVP_TARGETS or the cache)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--minutes", type=float, default=None,
        help="training time in all, resumed runs counted together: again with a larger one trains on (default: 30)",
    )
    budget.add_argument("--steps", type=int, default=None, help="training steps instead of minutes")
    p.add_argument("--init-from", default="demo", help="the generator to start from: demo, a target, or none")
    p.add_argument("--batch-size", type=int, default=4, help="training batch (16 or more on a GPU)")
    p.add_argument("--resolution", type=int, default=256, help="the generator's crop size (256, as the demo)")
    p.add_argument("--checkpoint-every", type=int, default=250, help="steps between checkpoints and validations")
    p.add_argument("--max-frames", type=int, default=None, help="use only the first N frames of the video")
    p.add_argument("--launch-args", default=None, help="options for accelerate launch, e.g. '--num_processes 2'")
    p.add_argument("--train-args", default=None, help="more options for training/train_target.py (experts)")


def _push(sub) -> None:
    p = sub.add_parser("push", help="publish a target folder with its card to the Hugging Face Hub")
    p.add_argument("folder", help="a target folder (dvp train's output)")
    p.add_argument("repo_id", help="owner/name on the Hub")
    p.add_argument("--private", action="store_true")
    p.add_argument("--token", default=None, help="a Hub token (default: the one `hf auth login` stored)")
    p.add_argument("--message", default="Upload Deep Video Portraits target", help="the commit message")


def _track(sub) -> None:
    p = sub.add_parser("track", help="track and fit the face parameters of a video")
    p.add_argument("video")
    p.add_argument("--output", "-o", required=True, help="PARAMS.safetensors")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--quiet", action="store_true")


def _render(sub) -> None:
    p = sub.add_parser("render", help="side-by-side preview: frame | diffuse | correspondence | gaze map")
    p.add_argument("params")
    p.add_argument("--video", required=True, help="the video the parameters were tracked from")
    p.add_argument("--output", "-o", required=True, help="PREVIEW.mp4")
    p.add_argument("--size", type=int, default=256)


def _reenact(sub) -> None:
    p = sub.add_parser("reenact", help="drive a target with a source video (or a `dvp track` parameter file)")
    p.add_argument("--target", default="demo", help="`demo`, a target's name, a pipeline folder or a Hub repo id")
    p.add_argument(
        "--source",
        required=True,
        action="append",
        help="source VIDEO or PARAMS.safetensors; repeat it, or give a folder, a glob or a .txt list, for a batch "
        "(under `accelerate launch` the sources are split across the processes)",
    )
    p.add_argument("--output", "-o", required=True, help="OUT.mp4, or an output folder for a batch")
    p.add_argument("--profile", action="store_true", help="print each stage's time (median, p95, share of a frame)")
    p.add_argument("--mode", choices=["reenact", "dub"], default="reenact")
    p.add_argument("--transfer", default="pose,expression,gaze", help="comma-separated subset of pose,expression,gaze")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--no-watermark", action="store_true", help="omit the visible SYNTHETIC label (metadata stays)")
    p.add_argument(
        "--no-pose-limit",
        action="store_true",
        help="let the head go beyond the target's trained poses (by default it is held near them: a generator "
        "paints a doubled head where its target's never was)",
    )
    p.add_argument(
        "--no-expression-limit",
        action="store_true",
        help="pass the source's expression on whole (by default, in reenact mode, a frown or squint the target never "
        "made is made smaller outside the mouth and eyes: a generator tears the collar on faces it never saw)",
    )
    p.add_argument(
        "--generated-torso",
        action="store_true",
        help="paste back the generated neck and shoulders too (by default the reference frame's are kept below the "
        "jaw: a generator paints skin over the collar under a mouth its target never made)",
    )
    p.add_argument(
        "--int8",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the generator and the refiner's detail branch in int8 on a CPU with PyTorch's x86 quantized engine "
        "(by default there for clips of 200 frames or more, which pay for its few seconds of calibration); "
        "--no-int8 runs them in float",
    )
    _crop_only(p)


def _live(sub) -> None:
    p = sub.add_parser("live", help="the live (webcam) path on a video file, paced as a camera: fps, drops, latency")
    p.add_argument("--target", default="demo")
    p.add_argument("--source", required=True, help="a video played as if it were a camera")
    p.add_argument("--output", "-o", required=True, help="the recording, OUT.mp4 (on the source's timeline)")
    p.add_argument("--params", default=None, help="also save the live motion as a parameter file (.safetensors)")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--no-watermark", action="store_true")
    p.add_argument("--mode", choices=["reenact", "dub"], default="reenact")
    p.add_argument("--as-fast-as-possible", action="store_true", help="no pacing: measure the throughput limit")
    p.add_argument("--profile", action="store_true", help="print each stage's time (median, p95, share of a frame)")
    p.add_argument(
        "--full-generator",
        action="store_true",
        help="run the target's full generator even where it ships a lighter distilled live generator",
    )
    _crop_only(p)


def _demo(sub) -> None:
    p = sub.add_parser("demo", help="the demo target driven by the motion clip that ships with the package")
    p.add_argument("--output", "-o", required=True, help="OUT.mp4")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument(
        "--mode",
        choices=["dub", "reenact"],
        default="dub",
        help="dub (default: the target keeps its head motion, the mouth follows the clip; the demo target's "
        "cleanest output) or reenact (the clip's head motion too)",
    )
    _crop_only(p)


def _evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="self-reenactment PSNR/SSIM and expression/pose fidelity of a target")
    p.add_argument("--target", default="demo")
    p.add_argument("--target-video", required=True, help="the target's own training video (for its real frames)")
    p.add_argument("--source", action="append", default=[], help="a driving video (repeatable)")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--no-identity", action="store_true", help="skip the dlib identity distances")
    p.add_argument("--json", default=None)
    p.add_argument("--no-pose-limit", action="store_true", help="drive without the pose limit (as dvp reenact)")
    p.add_argument(
        "--no-expression-limit", action="store_true", help="drive without the expression limit (as dvp reenact)"
    )
    p.add_argument(
        "--generated-torso", action="store_true", help="score the generated torso pasted back (as dvp reenact)"
    )


def _bench(sub) -> None:
    p = sub.add_parser("bench", help="run every stage's benchmark and print a table")
    p.add_argument("--json", default=None)


def _verify(sub) -> None:
    p = sub.add_parser("verify", help="is a video or image marked as made by dvp_hub? (C2PA, watermark, label)")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _space_export(sub) -> None:
    p = sub.add_parser("space-export", help="write a self-contained Hugging Face Space folder (and push it)")
    p.add_argument("folder", help="a new or empty folder")
    p.add_argument("--push", metavar="REPO_ID", default=None, help="upload the folder as a Gradio Space")
    p.add_argument(
        "--demo-model",
        metavar="REPO_ID",
        default=None,
        help="the model repo of the demo target, listed in the Space's front matter; with --push the demo target "
        "is published there first (default OWNER/dvp-TARGETNAME)",
    )
    p.add_argument("--wheel", default=None, help="ship this dvp-hub wheel instead of building one from the checkout")


def _space(sub) -> None:
    p = sub.add_parser("space", help="launch the Gradio Space (spaces/app.py) with the bundled demo target")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--host", default="127.0.0.1")
