"""The ``dvp evaluate`` and ``dvp bench`` commands: they run the evaluation or the benchmark scripts and
print their figures as tables (kept apart from `cli` so that each file stays readable)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile

from .errors import DVPError
from .identity import FaceEmbedder


def _load_pipeline(target: str):
    from .pipelines.pipeline_dvp import DeepVideoPortraitPipeline  # lazy: torch; dvp_hub.cli imports this module

    return DeepVideoPortraitPipeline.from_pretrained(target)


def _evaluation(args) -> dict:
    """Run `dvp evaluate`'s measures (contact sheets beside ``--json``); returns the result dict."""
    from .evaluate import self_reenactment  # lazy: torch and the pipeline; dvp_hub.cli imports this module
    from .evaluate_driven import driven  # lazy
    from .evaluate_measures import target_reference  # lazy

    pipe = _load_pipeline(args.target)
    embedder = ref = None
    if not args.no_identity:
        embedder = FaceEmbedder()
        ref = target_reference(embedder, args.target_video)
    stem = os.path.splitext(args.json)[0] if args.json else None  # contact sheets go next to the JSON

    def sheet(name):
        return f"{stem}_{name}.png" if stem else None

    torso: dict = {}  # the training frames' torsos, for counting driven frames with a torso never seen
    native: dict = {}  # the target's real frames at native size, for the driven rows' detail
    sr = self_reenactment(
        pipe, args.target_video, args.max_frames, embedder, sheet("self"), torso, native, not args.generated_torso
    )
    sources = [
        driven(
            pipe,
            s,
            args.max_frames,
            embedder,
            ref,
            sheet(os.path.splitext(os.path.basename(s))[0]),
            torso,
            limit_pose=not args.no_pose_limit,
            limit_expression=not args.no_expression_limit,
            native=native,
            reference_torso=not args.generated_torso,
        )
        for s in args.source
    ]
    return {"target": args.target, "self_reenactment": sr, "sources": sources}


def _kid(k: dict) -> str:
    return f"{k['kid']:.4f} +- {k['kid_std']:.4f}" if k else "n/a"


def _print_self(sr: dict, identity: bool) -> None:
    print(f"self-reenactment on {sr['validation_frames']} validation frames (video frames {sr['source_frames']}):")
    print(f"{'in the crop':22s} {'PSNR':>6s} {'SSIM':>6s} {'face':>12s} {'mouth':>12s}")
    for label, r in (
        ("model", sr),
        ("mean training frame", sr["baseline_mean_frame"]),
        ("nearest training frame", sr["baseline_nearest_frame"]),
    ):
        print(
            f"{label:22s} {r['psnr']:6.2f} {r['ssim']:6.3f} {r['psnr_face']:6.2f}/{r['ssim_face']:.3f} "
            f"{r['psnr_mouth']:6.2f}/{r['ssim_mouth']:.3f}"
        )
    nat = sr.get("native")
    if nat:
        w, h = nat["native_size"]
        print(f"{f'full frame {w}x{h}':22s} {'PSNR':>6s} {'SSIM':>6s} {'detail mid':>10s} {'finest':>7s} {'band err':>8s}")
        for label, key in (
            ("model", "full_frame"),
            ("generator, bilinear", "full_frame_generator_bilinear"),
            ("nearest training frame", "full_frame_baseline_nearest_frame"),
            ("mean training frame", "full_frame_baseline_mean_frame"),
        ):
            r = nat[key]
            extra = (
                f" {r['detail_mid_band']:10.2f} {r['detail_finest_band']:7.2f} {r['band_error']:8.2f}"
                if "band_error" in r
                else ""
            )
            print(f"{label:22s} {r['psnr']:6.2f} {r['ssim']:6.3f}{extra}")
        print(f"(band error of a face without the mid band: {nat['real_band_rms']:.2f}; detail of the real footage: 1)")
        if nat.get("face_kid"):
            k, floor = nat["face_kid"], nat["face_kid_baseline_nearest_frame"]
            print(f"face KID against the real held-out faces: {_kid(k)} (nearest training frames: {_kid(floor)})")
    if identity:
        print(f"identity of the output to the real frames {sr['identity_to_real_frames']:.3f}")
    print(
        f"novel torso (lower centre farther from every training frame than any real held-out frame, "
        f"{sr['torso_novelty_real_max']:.2f} grey levels): {sr['torso_novel_frames']}/{sr['validation_frames']} "
        "held-out outputs"
    )

    def floor(key):
        j, p = sr.get(f"{key}_jitter_iod"), sr.get(f"{key}_head_pose_error_deg")
        return "no face found" if j is None else f"jitter {j:.4f}, pose error {p:.2f}d"

    print(
        f"re-tracked at the crop's size (the floor for the driven rows): real held-out frames {floor('real')}; "
        f"their self-reenactment {floor('self_output')}"
    )


def _print_driven(sources: list, identity: bool) -> None:
    head = f"{'source':32s} {'mouth r':>8s} {'eyes r':>7s} {'pose err':>9s} {'jitter out/src':>15s} {'torso':>9s}"
    head += f" {'detail':>6s} {'finest':>6s} {'KID':>7s} {'held':>5s}"
    print(head + (f" {'id->target':>10s} {'id->source':>10s} {'src->target':>11s}" if identity else ""))
    for r in sources:
        nat = r.get("native", {})
        line = (
            f"{r['source'][-32:]:32s} {r['mouth_opening_correlation']:8.3f} {r['eye_openness_correlation']:7.3f} "
            f"{r['head_pose_error_deg']:8.2f}d {r['output_jitter_iod']:.4f}/{r['source_jitter_iod']:.4f}"
            f" {r['torso_novel_frames']:4d}/{r['frames']:<4d}"
            f" {nat.get('detail_mid_band', float('nan')):6.2f} {nat.get('detail_finest_band', float('nan')):6.2f}"
            f" {(nat.get('face_kid') or {}).get('kid', float('nan')):7.4f}"
            f" {100 * nat.get('pose_limited_share', float('nan')):4.0f}%"
        )
        if identity:
            line += (
                f" {r['identity_to_target']:10.3f} {r['identity_to_source']:10.3f} "
                f"{r['identity_source_to_target']:11.3f}"
            )
        print(line)
    print("(detail: the face's mid / finest band against the target's real footage at native size; KID: of the face "
          "squares against the real held-out faces, 0 when they match; held: frames the pose limit moved by a "
          "visible unit or more)")


def cmd_evaluate(args) -> None:
    result = _evaluation(args)
    _print_self(result["self_reenactment"], not args.no_identity)
    _print_driven(result["sources"], not args.no_identity)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


def cmd_bench(args) -> None:
    """Run every stage's benchmark script (they live in the repository's benchmarks/ folder)."""
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
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    for k, v in table:
        print(f"{k:48s} {v}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
