"""The ``dvp`` command line.

    dvp track VIDEO --output PARAMS.safetensors
    dvp render PARAMS.safetensors --video VIDEO --output PREVIEW.mp4
    dvp reenact --target demo --source VIDEO --output OUT.mp4 [--mode reenact|dub]
    dvp demo --output OUT.mp4
    dvp space

    dvp verify FILE                 (exit 0: marked synthetic, 1: not marked, 2: unreadable)

User errors print one line and exit with code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from .errors import DVPError


def _progress(label: str):
    from tqdm.auto import tqdm

    bar = None

    def update(done: int, total: int | None) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=label, unit="frame", leave=False)
        bar.n = done
        bar.refresh() if done == total or done % 25 == 0 else None
        if done == total:
            bar.close()

    return update


def cmd_track(args) -> None:
    from .face.fitting import fit_sequence
    from .face.tracker import FaceTracker
    from .video import VideoReader

    if not args.output.endswith(".safetensors"):
        raise DVPError(f"{args.output}: the parameter file must end in .safetensors.")
    reader = VideoReader(args.video, max_frames=args.max_frames)
    t0 = time.perf_counter()
    with FaceTracker() as tracker:
        track = tracker.track(
            reader,
            fps=reader.fps,
            num_frames=len(reader),
            name=args.video,
            progress=None if args.quiet else _progress("tracking"),
        )
    seq = fit_sequence(track)
    wall = time.perf_counter() - t0
    seq.info["source"] = os.path.basename(args.video)
    seq.save(args.output)
    n = track.num_frames
    busy = track.seconds + seq.info["fit_seconds"]
    print(
        f"frames tracked: {n - track.num_interpolated} of {n}; frames interpolated: {track.num_interpolated}"
        + ("; small face: tracked in an upscaled crop" if track.small_face_mode else "")
    )
    print(f"tracking + fitting: {n / busy:.0f} frames/s (decode excluded); {n / wall:.0f} frames/s end to end")
    print(
        f"reprojection error: {seq.info['reprojection_error_px']:.2f} px "
        f"({100 * seq.info['reprojection_error_iod']:.2f}% of the inter-ocular distance)"
    )
    print(f"wrote {args.output}")


def cmd_render(args) -> None:
    import numpy as np

    from .face.sequence import FaceSequence
    from .render.conditioning import ConditioningRenderer
    from .render.crop import Crop
    from .video import VideoReader, VideoWriter

    seq = FaceSequence.load(args.params)
    reader = VideoReader(args.video)
    if len(reader) != len(seq) or (reader.width, reader.height) != (seq.camera.width, seq.camera.height):
        raise DVPError(
            f"{args.video}: {len(reader)} frames of {reader.width}x{reader.height} do not match the parameter file "
            f"({len(seq)} frames of {seq.camera.width}x{seq.camera.height}); give the video it was tracked from."
        )
    crop = Crop.for_landmarks(seq.landmarks, reader.width, reader.height)
    renderer = ConditioningRenderer()
    size = args.size
    start = 0
    t0 = time.perf_counter()
    with VideoWriter(args.output, reader.fps, audio_from=args.video) as writer:
        for chunk in reader.chunks(64):
            cond = renderer.render(seq, crop, size, frames=slice(start, start + len(chunk)))
            imgs = ((cond.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
            for i, frame in enumerate(chunk):
                panels = [crop.apply(frame, size)] + [imgs[i, ..., 3 * k : 3 * k + 3] for k in range(3)]
                writer.write(np.concatenate(panels, 1))
            start += len(chunk)
    print(f"rendered {start} frames at {start / (time.perf_counter() - t0):.0f} frames/s; wrote {args.output}")


MOTION_CLIP = os.path.join(os.path.dirname(__file__), "assets", "motion", "speech-wda.safetensors")


def _load_pipeline(target: str):
    from .pipelines.pipeline_dvp import DeepVideoPortraitPipeline

    return DeepVideoPortraitPipeline.from_pretrained(target)


def _check_output(path: str) -> None:
    from .video import check_output_path

    check_output_path(path)  # fail before loading the target and tracking the source


def _check_source(path: str) -> None:
    """A readable video or parameter file, checked before torch is imported and the target loaded."""
    if path.endswith(".safetensors"):
        if not os.path.isfile(path):
            raise DVPError(f"{path}: no such parameter file; check the path (or give a video).")
        return
    from .video import probe_video

    probe_video(path)


def _report(out, output: str) -> None:
    st = out.stats
    print(
        f"{st['frames']} frames in {st['seconds']:.1f} s: {st['fps']:.1f} frames/s end to end "
        f"(generator {st['frames'] / max(st['generator_seconds'], 1e-9):.1f} frames/s); wrote {output} "
        "(labelled synthetic)"
    )
    if st.get("frames_beyond_target_pose_range"):
        print(
            f"note: {st['frames_beyond_target_pose_range']} frames turn the head up to {st['max_pose_offset_deg']:g} "
            f"degrees, beyond the target's trained {st['target_pose_range_deg']:g}: those frames are extrapolated"
        )


def cmd_reenact(args) -> None:
    _check_output(args.output)
    _check_source(args.source)
    pipe = _load_pipeline(args.target)
    src = {"source_parameters": args.source} if args.source.endswith(".safetensors") else {"source_video": args.source}
    out = pipe(
        **src,
        mode=args.mode,
        transfer=tuple(args.transfer.split(",")),
        max_frames=args.max_frames,
        output_video=args.output,
        watermark=not args.no_watermark,
    )
    _report(out, args.output)


def cmd_demo(args) -> None:
    _check_output(args.output)
    pipe = _load_pipeline("demo")
    out = pipe(source_parameters=MOTION_CLIP, output_video=args.output, max_frames=args.max_frames, mode=args.mode)
    _report(out, args.output)


def cmd_evaluate(args) -> None:
    import json

    from .evaluate import driven, self_reenactment, target_reference

    pipe = _load_pipeline(args.target)
    embedder = ref = None
    if not args.no_identity:
        from .identity import FaceEmbedder

        embedder = FaceEmbedder()
        ref = target_reference(embedder, args.target_video)
    stem = os.path.splitext(args.json)[0] if args.json else None  # contact sheets go next to the JSON

    def sheet(name):
        return f"{stem}_{name}.png" if stem else None

    result = {
        "target": args.target,
        "self_reenactment": self_reenactment(pipe, args.target_video, args.max_frames, embedder, sheet("self")),
        "sources": [
            driven(pipe, s, args.max_frames, embedder, ref, sheet(os.path.splitext(os.path.basename(s))[0]))
            for s in args.source
        ],
    }
    sr = result["self_reenactment"]
    print(f"self-reenactment on {sr['validation_frames']} validation frames (video frames {sr['source_frames']}):")
    print(f"{'':22s} {'PSNR':>6s} {'SSIM':>6s} {'face':>12s} {'mouth':>12s}")
    for label, r in (
        ("model", sr),
        ("mean training frame", sr["baseline_mean_frame"]),
        ("nearest training frame", sr["baseline_nearest_frame"]),
    ):
        print(
            f"{label:22s} {r['psnr']:6.2f} {r['ssim']:6.3f} {r['psnr_face']:6.2f}/{r['ssim_face']:.3f} "
            f"{r['psnr_mouth']:6.2f}/{r['ssim_mouth']:.3f}"
        )
    if embedder:
        print(f"identity of the output to the real frames {sr['identity_to_real_frames']:.3f}")
    head = f"{'source':32s} {'mouth r':>8s} {'eyes r':>7s} {'pose err':>9s} {'jitter out/src':>15s}"
    print(head + (f" {'id->target':>10s} {'id->source':>10s} {'src->target':>11s}" if embedder else ""))
    for r in result["sources"]:
        line = (
            f"{r['source'][-32:]:32s} {r['mouth_opening_correlation']:8.3f} {r['eye_openness_correlation']:7.3f} "
            f"{r['head_pose_error_deg']:8.2f}d {r['output_jitter_iod']:.4f}/{r['source_jitter_iod']:.4f}"
        )
        if embedder:
            line += (
                f" {r['identity_to_target']:10.3f} {r['identity_to_source']:10.3f} "
                f"{r['identity_source_to_target']:11.3f}"
            )
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


def cmd_bench(args) -> None:
    """Run every stage's benchmark script (they live in the repository's benchmarks/ folder)."""
    import json
    import subprocess
    import tempfile

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
    if not os.path.isdir(root):
        raise DVPError("dvp bench runs the scripts in the repository's benchmarks/ folder; run it from a checkout.")
    rows: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in (("foundation", []), ("network", []), ("pipeline", ["--long-seconds", "0"])):
            out = os.path.join(tmp, name + ".json")
            print(f"running benchmarks/bench_{name}.py ...", flush=True)
            subprocess.run(
                [sys.executable, os.path.join(root, f"bench_{name}.py"), "--json", out, *extra],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            with open(out) as fh:
                rows[name] = json.load(fh)
    f, net, pipe = rows["foundation"], rows["network"], rows["pipeline"]
    table = [
        ("decode 480 px (fps)", f["decode_fps"]),
        ("track, decode excluded (fps)", f["track_fps"]),
        ("fit (fps)", f["fit_fps"]),
        ("render 9 ch @256, batch 16 (fps)", f["render_fps_256_batch16"]),
    ]
    for r in net:
        if "eager_fp32_ms" in r:
            table.append(
                (f"generate {r['config']} (ms/frame eager / fast)", f"{r['eager_fp32_ms']} / {r['folded_cl_bf16_ms']}")
            )
        else:
            table.append((f"train {r['config']} (steps/s)", r["train_steps_per_s"]))
    table.append(("encode 256 px H.264 (fps)", f["encode_fps_256"]))
    for r in pipe:
        table.append(
            (
                f"end to end {r['config']}, {r['source_seconds']} s source (fps)",
                f"{r['fps']} (generator alone {r['generator_fps']}; overhead {r['overhead_over_generator']:.0%})",
            )
        )
    import platform

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    for k, v in table:
        print(f"{k:48s} {v}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="dvp", description="Deep Video Portraits: tracking, rendering, reenactment.")
    ap.add_argument(
        "--verbose",
        action="store_true",
        help="also show the libraries' own log lines (mediapipe, TensorFlow Lite, imageio); same as DVP_VERBOSE=1",
    )
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("track", help="track and fit the face parameters of a video")
    p.add_argument("video")
    p.add_argument("--output", "-o", required=True, help="PARAMS.safetensors")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_track)

    p = sub.add_parser("render", help="side-by-side preview: frame | diffuse | correspondence | gaze map")
    p.add_argument("params")
    p.add_argument("--video", required=True, help="the video the parameters were tracked from")
    p.add_argument("--output", "-o", required=True, help="PREVIEW.mp4")
    p.add_argument("--size", type=int, default=256)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("reenact", help="drive a target with a source video (or a `dvp track` parameter file)")
    p.add_argument("--target", default="demo", help="`demo`, a pipeline folder or a Hub repo id")
    p.add_argument("--source", required=True, help="source VIDEO or PARAMS.safetensors")
    p.add_argument("--output", "-o", required=True, help="OUT.mp4")
    p.add_argument("--mode", choices=["reenact", "dub"], default="reenact")
    p.add_argument("--transfer", default="pose,expression,gaze", help="comma-separated subset of pose,expression,gaze")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--no-watermark", action="store_true", help="omit the visible SYNTHETIC label (metadata stays)")
    p.set_defaults(func=cmd_reenact)

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
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("evaluate", help="self-reenactment PSNR/SSIM and expression/pose fidelity of a target")
    p.add_argument("--target", default="demo")
    p.add_argument("--target-video", required=True, help="the target's own training video (for its real frames)")
    p.add_argument("--source", action="append", default=[], help="a driving video (repeatable)")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--no-identity", action="store_true", help="skip the dlib identity distances")
    p.add_argument("--json", default=None)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("bench", help="run every stage's benchmark and print a table")
    p.add_argument("--json", default=None)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("verify", help="is a video or image marked as made by dvp_hub? (C2PA, watermark, label)")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_verify)

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
    p.set_defaults(func=cmd_space_export)

    p = sub.add_parser("space", help="launch the Gradio Space (spaces/app.py) with the bundled demo target")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--host", default="127.0.0.1")
    p.set_defaults(func=cmd_space)
    return ap


def cmd_space_export(args) -> None:
    from .space_export import export_space, push_space

    demo_model = args.demo_model
    if args.push and not demo_model:
        from .space_export import demo_name

        demo_model = f"{args.push.split('/')[0]}/dvp-{demo_name()}"
    done = export_space(args.folder, demo_model=demo_model, wheel=args.wheel)
    print(f"wrote {done['folder']}: {', '.join(done['files'])} (wheels/{done['wheel']})")
    if args.push:
        push_space(done["folder"], args.push, demo_model=demo_model)
        print(f"pushed the demo target to https://huggingface.co/{demo_model}")
        print(f"pushed the Space to https://huggingface.co/spaces/{args.push}")


def cmd_verify(args) -> int:
    from .provenance.verify import format_report, verify_file

    report = verify_file(args.file)
    if args.json:
        import json

        print(json.dumps(report, indent=1))
    else:
        print(format_report(report))
    return 0 if report["synthetic"] else 1


def cmd_space(args) -> None:
    from .space import launch

    launch(host=args.host, port=args.port)


def main(argv: list[str] | None = None) -> int:
    from .perf import tune_allocator

    tune_allocator()
    args = build_parser().parse_args(argv)
    if args.verbose:
        from .logs import set_verbose

        set_verbose(True)
    try:
        code = args.func(args)
    except DVPError as err:
        print(f"dvp {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dvp {args.command}: interrupted", file=sys.stderr)
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
