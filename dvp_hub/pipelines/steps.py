"""The steps of `DeepVideoPortraitPipeline.__call__`, in the order of the paper's figure 2.

1. `check_inputs`: the source and output files (probed, not decoded), before any work (`RunOptions` checks the rest);
2. `track_source` / `load_parameters`: landmarks per frame, then the parametric face fit;
3. `retarget_motion`: the source's pose, expression and gaze on the target's face (reenact or dub);
4. `render_generate_write`: conditioning images, the generator over the space-time window, and the
   frames (pasted back, marked synthetic) written to the video or kept, chunk by chunk;
5. `collect_frames`: the kept frames in the requested output type.

Each stage that takes time shows one progress bar, numbered ``[k/n]``, created with its total.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from diffusers.utils import logging
from PIL import Image
from tqdm.auto import tqdm

from ..errors import InputError
from ..face.fitting import fit_sequence
from ..face.sequence import FaceSequence
from ..face.track_parts import track_reader
from ..models.inference import generate_windows, input_dtype
from ..motion import retarget
from ..profile import timed
from ..render.conditioning import NUM_CHANNELS, ConditioningRenderer
from ..video import VideoReader, check_output_path
from .finish import FrameFinisher
from .live_generator import offline_int8
from .streaming import Worker, in_background, prefetch, use_threads

logger = logging.get_logger(__name__)

def stage_bar(pipe, label: str, total: int):
    """One progress bar for a pipeline stage, created with its description and total (no empty ``0/N``
    line first); honours ``pipe.set_progress_bar_config`` (e.g. ``disable=True``)."""
    config = {"unit": "frame", "dynamic_ncols": True, **getattr(pipe, "_progress_bar_config", {})}
    return tqdm(total=total, desc=label, **config)


def check_inputs(source_video, source_parameters, output_video, max_frames):
    """Step 1: refuse unreadable sources and unwritable outputs at once (the options are checked by `RunOptions`).
    Returns a `VideoReader` over the source video (probed, not decoded), or None for a parameter file."""
    if (source_video is None) == (source_parameters is None):
        raise InputError("give exactly one of source_video= or source_parameters=.")
    if output_video is not None:
        check_output_path(output_video)
    return VideoReader(source_video, max_frames=max_frames) if source_video is not None else None


def source_motion(pipe, reader, source_parameters, max_frames, show: bool):
    """Step 2: the source's `FaceSequence`: tracked and fitted from ``reader`` (one progress bar), or loaded."""
    if reader is None:
        return load_parameters(source_parameters, max_frames)
    stages = 2
    bar = stage_bar(pipe, f"[1/{stages}] tracking the source", len(reader)) if show else None
    try:
        return track_source(reader, bar)
    finally:  # before any error message, so that it gets a line of its own
        bar.close() if bar is not None else None


def drive_motion(pipe, reader, source_parameters, opts, show: bool, times=None) -> tuple:
    """Steps 2 and 3: ``(source, drive, pose_report)``, the source's `FaceSequence` (`source_motion`) and the
    target's (`retarget_motion`), each timed into ``times`` (a `profile.StageTimes` or None)."""
    with timed(times, "track + fit", len(reader) if reader is not None else 0):
        source = source_motion(pipe, reader, source_parameters, opts.max_frames, show)
    if times is not None and reader is None:
        times.frames["track + fit"] = len(source)  # a parameter file: its frames, known once it is loaded
    with timed(times, "retarget", len(source)):
        drive, pose_report = retarget_motion(pipe, source, opts)
    return source, drive, pose_report


def track_source(reader, bar=None):
    """Step 2 from a video: mediapipe landmarks per frame, then the face model fitted to them."""
    def tick(done, total):
        if bar is not None:
            bar.update(done - bar.n)

    return fit_sequence(track_reader(reader, progress=tick))


def load_parameters(source_parameters, max_frames=None):
    """Step 2 from a `dvp track` parameter file (or a `FaceSequence`)."""
    seq = source_parameters if isinstance(source_parameters, FaceSequence) else FaceSequence.load(source_parameters)
    return seq.slice(0, max_frames) if max_frames else seq


def retarget_motion(pipe, source, opts):
    """Step 3: the sequence that drives the target, and its pose-range report (a warning when the head
    turns beyond what the target was trained on; with ``limit_pose`` / ``limit_expression``, how many frames were
    held near the target's trained poses / expressions)."""
    mode, transfer, neutral_frame = opts.mode, opts.transfer, opts.neutral_frame
    limit_pose, limit_expression = opts.limit_pose, opts.limit_expression
    if neutral_frame is not None and not 0 <= int(neutral_frame) < len(source):
        raise InputError(f"neutral_frame={neutral_frame} is outside the source's {len(source)} frames.")
    state = pipe.target_state
    tgt, tneu, tneu_expr = state.sequence, state.neutral_frame, state.neutral_expression
    cfg = pipe.target.config
    if mode == "reenact":
        limits = state.pose_limits if limit_pose else None
        expr_limits = state.expression_limits if limit_expression else None
        drive = retarget.reenact(
            source,
            tgt,
            cfg.reference_frame,
            neutral_frame,
            tneu,
            transfer,
            tneu_expr,
            limits=limits,
            expression_limits=expr_limits,
        )
    else:
        drive = retarget.dub(source, tgt, cfg.train_frames, neutral_frame, tneu, tneu_expr)
    report = retarget.pose_range(drive, tgt, cfg.reference_frame, cfg.train_frames)
    report["frames_pose_limited"] = int(drive.info.get("frames_pose_limited", 0))
    report["frames_expression_limited"] = int(drive.info.get("frames_expression_limited", 0))
    if report["frames_beyond_target_pose_range"]:
        logger.warning(
            f"{report['frames_beyond_target_pose_range']} of {len(drive)} frames turn the head up to "
            f"{report['max_pose_offset_deg']:g} degrees from the target's reference pose; its training "
            f"frames reached {report['target_pose_range_deg']:g}. Those frames are extrapolated and look "
            "worse: use a source with smaller head turns, or transfer=('expression', 'gaze')."
        )
    return drive, report


def conditioning_clips(pipe, drive, batch_size, chunk_size, fast, one_buffer=False, times=None, int8=None):
    """`render_generate_write`'s conditioning, rendered chunk by chunk: for each batch, ``(clip, quantized)``, its
    frames plus their history ``[hist + B, 9, R, R]`` in channels_last memory, and the same quantized for ``int8``
    (None without). The first frame's history is the first frame repeated, as in training. The first chunk is one
    batch long (the generator starts sooner), the rest ``chunk_size``. ``one_buffer``: every chunk in one buffer
    allocated once (a batch is then valid until the next chunk is rendered)."""
    device, gen = pipe._execution_device, pipe.generator
    hist, in_dtype = gen.config.temporal_window - 1, input_dtype(gen, fast)
    size, crop = pipe.target.config.resolution, pipe.target.crop
    albedo = pipe.target_state.sequence.albedo
    renderer = ConditioningRenderer(device=device)
    n = len(drive)
    chunk_buf = None
    if one_buffer:
        chunk_buf = torch.empty(hist + chunk_size, size, size, NUM_CHANNELS, dtype=in_dtype, device=device)
    tail = None  # the previous chunk's last `hist` renders
    # the first chunk one batch long: overlapped, the generator then starts after a batch's renders, not a chunk's
    first, s = min(batch_size, chunk_size), 0
    while s < n:
        e = min(n, s + (first if s == 0 else chunk_size))
        if chunk_buf is None:
            cond = torch.empty(hist + e - s, size, size, NUM_CHANNELS, dtype=in_dtype, device=device)
        else:
            cond = chunk_buf[: hist + e - s]
        cond = cond.permute(0, 3, 1, 2)  # [hist + e - s, 9, R, R] in channels_last memory
        with timed(times, "render", e - s):
            renderer.render(drive, crop, size, frames=slice(s, e), batch_size=16, albedo=albedo, out=cond[hist:])
        cond[:hist] = cond[hist : hist + 1] if tail is None else tail
        tail = cond[len(cond) - hist :].clone()  # a copy: the buffer is overwritten next
        # int8: the chunk quantized once, here (beside the generator when overlapped), not each batch's clip,
        # which would quantize every frame once per window batch it is in
        quantized = None
        if int8 is not None:
            with timed(times, "quantize (int8)", e - s):
                quantized = int8.quantize(cond)
        for b in range(0, e - s, batch_size):
            part = slice(b, b + hist + min(batch_size, e - s - b))
            yield cond[part], None if quantized is None else quantized[part]
        s = e


def render_generate_write(
    pipe, drive, on_output, *, batch_size=8, chunk_size=64, fast=True, overlap=None, bar=None, times=None, int8=None
) -> float:
    """Step 4: render the conditioning of ``drive`` chunk by chunk, run the generator over each frame's
    space-time window, and hand each batch of generator output (``[B, 3, R, R]`` in [-1, 1], frames in order)
    with the same frames' conditioning (``[B, 9, R, R]``) to ``on_output(out, cond)``. ``on_output`` may be a
    tuple of stages instead (`frame_sink`'s refine, then paste back, mark and write): the first gets
    ``(out, cond)``, each next one the ``(a, b)`` pair the one before returned, the last returns nothing.

    The first frame's history is the first frame repeated, as in training. With ``overlap`` (the default)
    the next batches are rendered in one thread and each output stage runs in a thread of its own while
    the generator runs (`streaming`); on a CPU each of those threads gets one torch thread and the
    generator the rest, so the stages share the cores instead of each claiming all of them. Without it
    everything runs in turn and the chunk of renders lives in one buffer allocated once. ``int8``: an
    `models.int8.Int8WindowGenerator` of the generator to run instead (`live_generator.offline_int8`).
    Returns the seconds spent in the generator.
    """
    device = pipe._execution_device
    gen = pipe.generator
    hist = gen.config.temporal_window - 1
    overlap = True if overlap is None else overlap
    clips = conditioning_clips(pipe, drive, batch_size, chunk_size, fast, one_buffer=not overlap, times=times, int8=int8)

    cpu = device.type == "cpu"
    stage_threads = 1 if cpu else None  # each side stage's torch threads on a CPU; the generator gets the rest
    chain = _stage_chain(tuple(on_output) if isinstance(on_output, (tuple, list)) else (on_output,), bar)
    torch_threads, workers = torch.get_num_threads(), []

    def finish(item: tuple) -> None:
        for f in chain:
            item = f(item)

    gen_seconds = 0.0
    try:
        if overlap:
            workers = _stage_workers(chain, threads=stage_threads)
            if cpu:
                use_threads(max(1, torch_threads - len(workers)))
        for clip, quantized in prefetch(clips, threads=stage_threads) if overlap else clips:
            t0 = time.perf_counter()
            with timed(times, "generator", len(clip) - hist):
                out = generate_windows(gen, clip, fast=fast) if int8 is None else int8.clip(quantized, hist + 1)
            gen_seconds += time.perf_counter() - t0
            # overlapped: a copy, so that a chunk's renders are freed once generated, not once written
            item = (out, clip[hist:].clone() if workers else clip[hist:])
            workers[0].put(item) if workers else finish(item)
        for w in workers:  # in order: each one's last items reach the next before it closes
            w.close()
    except BaseException:
        for w in reversed(workers):  # the run is lost: drop what is queued, wait for what is in hand
            w.cancel()
        raise
    finally:
        use_threads(torch_threads)
    return gen_seconds


def _stage_chain(stages: tuple, bar) -> list:
    """The output stages as functions of one item each (``item -> next item``), the last one ticking ``bar``."""

    def last(item: tuple) -> None:
        stages[-1](*item)
        if bar is not None:
            bar.update(len(item[0]))

    return [*(lambda item, f=f: f(*item) for f in stages[:-1]), last]


def _stage_workers(chain: list, threads: int | None) -> list[Worker]:
    """One `Worker` thread per stage of ``chain``, each handing its result to the next one's queue."""
    workers: list[Worker] = []
    for f in reversed(chain):  # from the last stage back: each needs the next one's queue
        if workers:
            f = lambda item, f=f, nxt=workers[0].put: nxt(f(item))
        workers.insert(0, Worker(f, threads=threads))
    return workers


def prepare_finisher(pipe, opts, paste_back: bool, frames: int | None) -> tuple:
    """Step 4's setup: ``(finisher, int8)``, the run's `FrameFinisher` and its int8 generator (None: float; chosen
    by `live_generator.offline_int8` for a run of ``frames`` frames, and then the refiner's detail branch in int8
    too, `FrameFinisher.use_int8`), both calibrated. It reads only the target, so a run starts it beside
    tracking (`streaming.in_background`); the caller closes the finisher."""
    finisher = FrameFinisher(
        pipe, paste_back, opts.refine, opts.watermark, opts.invisible_watermark, opts.fast, opts.reference_torso
    )
    try:
        _ = finisher.changed_region  # the marked reference frame made here, beside tracking, not as frames wait
        int8 = offline_int8(pipe, opts.int8, opts.fast, frames=frames)
        if int8 is not None:
            finisher.use_int8(pipe, int8)
    except BaseException:
        finisher.close()
        raise
    return finisher, int8


def start_setup(pipe, opts, paste_back: bool, frames: int | None):
    """`prepare_finisher` started beside tracking (`streaming.in_background`: call the result for ``(finisher,
    int8)``), or None where the run's length is not known yet. The target's state is made first, in the caller's
    thread: its LAPACK solves in the setup thread while tracking made its own hung numpy's OpenBLAS (0.3.23) for
    good."""
    if frames is None:
        return None
    _ = pipe.target_state  # made once per target; tracking and retargeting need it too
    return in_background(lambda: prepare_finisher(pipe, opts, paste_back, frames))


def discard_prepared(prepared) -> None:
    """Wait for a `prepare_finisher` started with `streaming.in_background` and release what it made (the run failed;
    an error of its own is dropped: the run's is the one to report)."""
    try:
        finisher, _ = prepared()
    except BaseException:  # noqa: BLE001
        return
    finisher.close()


def generate_and_write(
    pipe, drive, finisher, writer, frames: list, opts, int8=None, bar=None, times=None, callback=None
) -> tuple[float, str]:
    """Step 4 with its sink: every frame refined, pasted back and marked (``finisher``), then written to ``writer``
    (closed at the end; aborted, nothing left on disk, on an error) or appended to ``frames``. Returns the
    generator's seconds and how it ran (``"int8"`` with ``int8``, the int8 generator from `prepare_finisher`, else
    ``"float"``). ``times``: a `profile.StageTimes` for render, generator and encode. ``callback``: as
    `frame_sink`'s."""
    sink = frame_sink(finisher, writer, frames, times, callback)
    try:
        seconds = render_generate_write(
            pipe, drive, sink, batch_size=opts.batch_size, chunk_size=opts.chunk_size, fast=opts.fast,
            overlap=opts.overlap, bar=bar, times=times, int8=int8,
        )
        if writer is not None:
            with timed(times, "encode (finish)", len(drive)):
                writer.close()
        return seconds, "float" if int8 is None else "int8"
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        bar.close() if bar is not None else None


def frame_sink(finisher, writer, frames: list, times=None, callback=None) -> tuple:
    """``on_output`` for `render_generate_write`, as two stages: the refiner (`finish.FrameFinisher.crops`), then
    paste-back and marks (`FrameFinisher.frame`), each frame written to ``writer`` or appended to ``frames``, then
    handed to ``callback(index, frame, conditioning)`` where given (timed as "callback")."""
    count = 0
    changed = finisher.changed_region  # each frame written converts only its region (`VideoWriter.write`)

    def refine(out: torch.Tensor, cond: torch.Tensor | None = None) -> tuple:
        return finisher.crops(out, cond), cond

    def write(crops: np.ndarray, cond: torch.Tensor | None = None) -> None:
        nonlocal count
        for i, crop in enumerate(crops):
            img = finisher.frame(crop, None if cond is None else cond[i])
            with timed(times, "encode"):
                writer.write(img, changed) if writer is not None else frames.append(img)
            if callback is not None:
                with timed(times, "callback"):
                    callback(count, img, None if cond is None else cond[i])
            count += 1

    return refine, write


def collect_frames(frames: list, output_type: str):
    """Step 5: the kept frames as ``(1, F, H, W, 3)`` floats ("np"), ``(1, F, 3, H, W)`` ("pt") or PIL lists."""
    arr = np.stack(frames)
    if output_type == "np":
        return (arr.astype(np.float32) / 255.0)[None]
    if output_type == "pt":
        return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(255)[None]
    return [[Image.fromarray(a) for a in arr]]
