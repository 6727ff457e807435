"""The ``dvp`` command line.

    dvp track VIDEO --output PARAMS.safetensors
    dvp render PARAMS.safetensors --video VIDEO --output PREVIEW.mp4
    dvp reenact --target demo --source VIDEO --output OUT.mp4 [--mode reenact|dub]
    dvp demo --output OUT.mp4
    dvp space

    dvp verify FILE                 (exit 0: marked synthetic, 1: not marked, 2: unreadable)

User errors print one line and exit with code 2, without a traceback.

Each command imports what it needs (torch, mediapipe, gradio) when it runs, inside its function: that is what keeps
`dvp --help`, `dvp verify` and a refused input fast; the imports inside this module's functions are for that.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time

import numpy as np

from .cli_parser import build_parser
from .errors import DVPError
from .logs import set_verbose
from .perf import tune_allocator
from .profile import format_rows
from .provenance.verify import format_report, verify_file
from .sources import expand_sources, is_batch
from .space_export import demo_name, export_space, push_space
from .video import VideoReader, VideoWriter, check_output_path, probe_video


def _progress(label: str):
    from tqdm.auto import tqdm  # lazy: tqdm.auto takes ~70 ms, only dvp track's bar needs it; dvp --help starts fast

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
    from .face.fitting import fit_sequence  # lazy: scipy, the face model (torch, mediapipe later); --help starts fast
    from .face.track_parts import track_reader  # lazy

    if not args.output.endswith(".safetensors"):
        raise DVPError(f"{args.output}: the parameter file must end in .safetensors.")
    reader = VideoReader(args.video, max_frames=args.max_frames)
    t0 = time.perf_counter()
    track = track_reader(reader, progress=None if args.quiet else _progress("tracking"))
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
    from .face.sequence import FaceSequence  # lazy: the face model, the renderer (torch); dvp --help starts fast
    from .render.conditioning import ConditioningRenderer  # lazy
    from .render.crop import Crop  # lazy

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
    from .pipelines.pipeline_dvp import DeepVideoPortraitPipeline  # lazy: torch and diffusers, after the input checks

    return DeepVideoPortraitPipeline.from_pretrained(target)


def _check_output(path: str) -> None:
    check_output_path(path)  # fail before loading the target and tracking the source


def _check_source(path: str) -> None:
    """A readable video or parameter file, checked before torch is imported and the target loaded."""
    if path.endswith(".safetensors"):
        if not os.path.isfile(path):
            raise DVPError(f"{path}: no such parameter file; check the path (or give a video).")
        return
    probe_video(path)


def _report(out, output: str) -> None:
    st = out.stats
    print(
        f"{st['frames']} frames in {st['seconds']:.1f} s: {st['fps']:.1f} frames/s end to end "
        f"({st['generator']} generator {st['frames'] / max(st['generator_seconds'], 1e-9):.1f} frames/s); "
        f"wrote {output} "
        "(labelled synthetic)"
    )
    if st.get("frames_beyond_target_pose_range"):
        print(
            f"note: {st['frames_beyond_target_pose_range']} frames turn the head up to {st['max_pose_offset_deg']:g} "
            f"degrees, beyond the target's trained {st['target_pose_range_deg']:g}: those frames are extrapolated"
        )
    if st.get("frames_pose_limited"):
        print(
            f"note: {st['frames_pose_limited']} frames held the head nearer the target's trained poses than the "
            "source moved (--no-pose-limit to follow it further)"
        )
    if st.get("frames_expression_limited"):
        print(
            f"note: {st['frames_expression_limited']} frames made a smaller expression than the source's, to stay "
            "near the target's trained faces (--no-expression-limit to pass it on whole)"
        )


def _reenact_to(pipe, args, source: str, output: str):
    src = {"source_parameters": source} if source.endswith(".safetensors") else {"source_video": source}
    return pipe(
        **src,
        mode=args.mode,
        transfer=tuple(args.transfer.split(",")),
        max_frames=args.max_frames,
        output_video=output,
        watermark=not args.no_watermark,
        limit_pose=not args.no_pose_limit,
        limit_expression=not args.no_expression_limit,
        paste_back=False if args.crop_only else None,
        reference_torso=not args.generated_torso,
        progress=not args.batch,
        profile=args.profile,
        int8=args.int8,
    )


def cmd_reenact(args) -> int:
    args.batch = is_batch(args.source, args.output)
    if not args.batch:
        _check_output(args.output)
        _check_source(args.source[0])
        out = _reenact_to(_load_pipeline(args.target), args, args.source[0], args.output)
        _report(out, args.output)
        if args.profile:
            print(format_rows(out.stats["profile"]))
        return 0
    sources = expand_sources(args.source)
    from .batch import process_device, run_batch  # lazy: accelerate, and so torch: once the sources are known to exist

    pipe = _load_pipeline(args.target).to(process_device())

    def one(source: str, output: str) -> int:
        _check_source(source)
        out = _reenact_to(pipe, args, source, output)
        print(f"{source}: {out.stats['frames']} frames at {out.stats['fps']:.1f} frames/s -> {output}", flush=True)
        return out.stats["frames"]

    rows = run_batch(sources, args.output, one)
    if rows is not None:  # the main process: everyone's rows
        failed = [r for r in rows if r["status"].startswith("failed")]
        skipped = sum(r["status"].startswith("skipped") for r in rows)
        for r in failed:
            print(f"{r['source']}: {r['status']}", file=sys.stderr)
        print(
            f"{len(sources)} sources: {len(rows) - len(failed) - skipped} written, {skipped} already there, "
            f"{len(failed)} failed; summary in {os.path.join(args.output, 'summary.json')} (and .csv)"
        )
        return 1 if failed else 0
    return 0


def cmd_demo(args) -> None:
    _check_output(args.output)
    pipe = _load_pipeline("demo")
    out = pipe(
        source_parameters=MOTION_CLIP,
        output_video=args.output,
        max_frames=args.max_frames,
        mode=args.mode,
        paste_back=False if args.crop_only else None,
    )
    _report(out, args.output)


def cmd_live(args) -> None:
    """The live path on a file, paced at its own frame rate as a camera would deliver it."""
    _check_output(args.output)
    _check_source(args.source)
    from .pipelines.live_runner import pipelined_by_default, run_paced  # lazy: torch; tests patch run_paced

    reader = VideoReader(args.source, max_frames=args.max_frames)
    pipe = _load_pipeline(args.target)
    session = pipe.live(
        fps=reader.fps,
        mode=args.mode,
        watermark=not args.no_watermark,
        paste_back=False if args.crop_only else None,
        light=not args.full_generator,
    )
    writer = VideoWriter(
        args.output,
        reader.fps,
        audio_from=args.source,
        provenance=pipe.provenance(mode="live", source=args.source),
        low_latency=True,
    )
    how = session.generator_label + (", stages side by side" if pipelined_by_default(session) else "")
    times = session.start_profile() if args.profile else None
    try:
        st = run_paced(session, reader, reader.fps, writer, realtime=not args.as_fast_as_possible)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    seq = session.parameters() if args.params else None
    if seq is not None:
        seq.save(args.params)
    print(
        f"frames in {st['frames_in']}, out {st['frames_out']}, dropped {st['frames_dropped']} "
        f"({100 * st['dropped_fraction']:.1f}%); {st['fps']:.1f} fps; latency p50 {st['latency_p50_ms']:.0f} ms, "
        f"p95 {st['latency_p95_ms']:.0f} ms ({how}); wrote {args.output} ({st['frames_recorded']} frames, "
        "labelled synthetic)"
        + ("" if seq is not None or not args.params else "; no frame was fitted after calibration: no parameter file")
    )
    if times is not None:
        print(times.table())


from .cli_reports import cmd_bench, cmd_evaluate  # noqa: E402 - the table-printing commands live there


def cmd_train(args) -> int:
    from .cli_targets import cmd_train as run  # lazy: torch and the tracker, for this command only; --help starts fast

    if not args.minutes and not args.steps:
        args.minutes = 30.0
    return run(args)


def cmd_push(args) -> int:
    from .cli_targets import cmd_push as run  # lazy: torch and the tracker, for this command only; --help starts fast

    return run(args)


def cmd_space_export(args) -> None:
    demo_model = args.demo_model
    if args.push and not demo_model:
        demo_model = f"{args.push.split('/')[0]}/dvp-{demo_name()}"
    done = export_space(args.folder, demo_model=demo_model, wheel=args.wheel)
    print(f"wrote {done['folder']}: {', '.join(done['files'])} (wheels/{done['wheel']})")
    if args.push:
        push_space(done["folder"], args.push, demo_model=demo_model)
        print(f"pushed the demo target to https://huggingface.co/{demo_model}")
        print(f"pushed the Space to https://huggingface.co/spaces/{args.push}")


def cmd_verify(args) -> int:
    report = verify_file(args.file)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(format_report(report))
    return 0 if report["synthetic"] else 1


def cmd_space(args) -> None:
    from .space import launch  # lazy: gradio, torch, diffusers: for this command only; dvp --help starts fast

    launch(host=args.host, port=args.port)


COMMANDS = {
    "track": cmd_track,
    "render": cmd_render,
    "reenact": cmd_reenact,
    "live": cmd_live,
    "demo": cmd_demo,
    "evaluate": cmd_evaluate,
    "bench": cmd_bench,
    "verify": cmd_verify,
    "space-export": cmd_space_export,
    "space": cmd_space,
    "train": cmd_train,
    "push": cmd_push,
}


def main(argv: list[str] | None = None) -> int:
    tune_allocator()
    args = build_parser().parse_args(argv)
    if args.verbose:
        set_verbose(True)
    try:
        code = COMMANDS[args.command](args)
    except DVPError as err:
        print(f"dvp {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dvp {args.command}: interrupted", file=sys.stderr)
        return 130
    return code if isinstance(code, int) else 0


def entry() -> None:
    """The `dvp` command: `main`, then exit. What is left is freed as the process ends, so the interpreter's last
    cycle collection is spared walking it (`gc.freeze`: with torch and a pipeline loaded, it took ~1 s between the
    command's last line and the prompt). In a process that goes on (tests, notebooks), call `main` instead."""
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()
