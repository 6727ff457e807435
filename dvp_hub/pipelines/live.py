"""Live reenactment: the target follows a camera frame by frame (`DeepVideoPortraitPipeline.live`).

The generator only looks at the current and the ``Nw - 1`` previous conditioning frames, so the whole
path can run causally, one frame at a time:

1. mediapipe's face mesh in video (tracking) mode on the frame;
2. `LiveFaceFitter`: calibration on the first second (identity and neutral reference), then a per-frame
   fit against it with One-Euro smoothing;
3. retargeting as offline (`retarget.reenact` with the calibration's reference as the neutral frame);
4. one render, written into a ring buffer of the last ``Nw`` conditioning frames (each frame is written
   twice, at ``k mod Nw`` and ``k mod Nw + Nw``, so the window is always one contiguous slice: no
   99-channel stack is rebuilt, `generate_windows` reads it in place);
5. the generator on that window: on a CPU with PyTorch's x86 quantized engine in int8 (`models.int8`: the ring
   is then kept quantized; 10 ms a window against 33 ms compiled fp32 on two Intel cores), else its levels after
   the first compiled by inductor where a C++ compiler is there (`models.inference.compiled_rest`, 12.6 ms
   against 17.7 ms a frame on two AMD cores in bf16); the visible label and the invisible watermark on the
   output.

While calibrating, the target is shown at its own reference pose. A frame without a face holds the last
parameters. `LiveRunner` puts a session behind a one-frame mailbox: frames that arrive while one is being
processed replace the waiting one (dropped), so latency never grows, and a recording repeats the last
output for each dropped frame so it lasts as long as what was filmed.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import torch

from . import retarget
from .finish import FrameFinisher

_BLAS = None


def _one_blas_thread():
    """numpy's BLAS limited to one thread while a frame is prepared (`threadpoolctl`).

    The per-frame fit makes small BLAS calls; OpenBLAS then keeps its worker threads spinning for a while,
    and on two cores they take a core from torch's OpenMP team in the generator that follows: 15-20% of
    generator calls took ~100 ms instead of 19 (2 cores, demo, talking-d3, 120 frames: 14-22 calls over
    50 ms). With one BLAS thread: none over 24 ms, and the fit is no slower (its matrices are small).
    """
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController().select(user_api="blas")
    return _BLAS.limit(limits=1)


def calibration_windows(pipe, runs: int = 3, length: int = 16) -> list[torch.Tensor]:
    """Conditioning windows ``[1, 9, Nw, R, R]`` of the target's own training frames, for int8 calibration:
    ``runs`` stretches of ``length`` consecutive frames spread over the training clip (``length - Nw + 1``
    windows each)."""
    from ..render.conditioning import ConditioningRenderer

    seq, w = pipe._target_state()["sequence"], pipe.generator.config.temporal_window
    n, size = pipe.target.config.train_frames, pipe.target.config.resolution
    length = min(max(length, w), n)
    renderer = ConditioningRenderer(device=pipe._execution_device)
    out = []
    for start in np.linspace(0, n - length, runs).round().astype(int):
        clip = renderer.render(seq, pipe.target.crop, size, frames=slice(start, start + length))
        x = clip.float().permute(1, 0, 2, 3)[None]  # [1, 9, T, R, R]
        out += [x[:, :, j : j + w].contiguous(memory_format=torch.channels_last_3d) for j in range(length - w + 1)]
    return out


def int8_live_generator(pipe):
    """The pipeline's generator quantized for the live path (`models.int8`), or None where int8 is unavailable
    or fails here (the compiled float generator runs instead; a failure is logged once)."""
    from ..models.int8 import cached_int8, int8_available

    ok, _why = int8_available(pipe._execution_device)
    if not ok:
        return None
    try:
        return cached_int8(pipe.generator, lambda: calibration_windows(pipe))
    except Exception as err:  # noqa: BLE001 - an unsupported op in a future PyTorch: the float path still works
        import logging

        logging.getLogger("dvp_hub").warning(
            "the int8 generator is unavailable (%s); running it in float", str(err).strip().splitlines()[0][:160]
        )
        return None


def compile_live_generator(pipe) -> bool:
    """Compile the pipeline's generator for the live path's one-window batch (`models.inference.compiled_rest`):
    seconds the first time in a process, one generator run after. False where it fell back to eager."""
    from ..models.inference import compiled_rest, generate_windows, input_dtype

    gen, size = pipe.generator, pipe.target.config.resolution
    w = gen.config.temporal_window
    window = torch.zeros(w, size, size, 9, dtype=input_dtype(gen, True), device=pipe._execution_device)
    with torch.no_grad():
        generate_windows(gen, window.permute(0, 3, 1, 2), fast=True, compiled=True)  # as the ring is read
    return compiled_rest(gen) is not None


class LiveSession:
    """A streaming session: ``push(frame) -> output frame`` (``H x W x 3`` uint8 in, the target's crop out)."""

    def __init__(
        self,
        pipe,
        fps: float = 30.0,
        mode: str = "reenact",
        transfer=retarget.TRANSFERABLE,
        calibration_seconds: float = 1.0,
        watermark: bool = True,
        invisible_watermark: bool = True,
        fast: bool = True,
        compile: bool = True,
        limit_pose: bool = True,
        limit_expression: bool = True,
        int8: bool = True,
        paste_back: bool | None = None,
        refine: bool = False,
    ):
        from ..face import live_fit  # noqa: F401 - imported now (scipy.signal, ~0.3 s), not on the first camera frame
        from ..face.tracker import tracking_mesh
        from ..models.inference import input_dtype
        from ..render.conditioning import ConditioningRenderer

        if mode not in ("reenact", "dub"):
            from ..errors import InputError

            raise InputError(f"mode must be 'reenact' or 'dub', got {mode!r}.")
        self.pipe, self.fps, self.mode, self.transfer = pipe, float(fps), mode, tuple(transfer)
        self.watermark, self.invisible_watermark, self.fast = watermark, invisible_watermark, fast
        self.calibration_frames = max(1, int(round(calibration_seconds * fps)))
        self._mesh = tracking_mesh()
        self.fitter = None  # made on the first frame (it needs the frame size)
        state = pipe._target_state()
        self._target, self._tneu = state["sequence"], state["neutral_frame"]
        self._tneu_closed = state["neutral_expression"]  # expressions are measured from it (closed lips)
        self._tref = pipe.target.config.reference_frame
        self._limits = state["pose_limits"] if limit_pose else None  # the head stays where the target's was
        self._expr_limits = state["expression_limits"] if limit_expression else None  # the face near its trained ones
        self._limit_state: dict = {}  # both limits' pulls, smoothed causally frame to frame
        self._renderer = ConditioningRenderer(device=pipe._execution_device)
        self._window = pipe.generator.config.temporal_window
        size = self._resolution = int(pipe.target.config.resolution)
        paste_back = pipe.has_reference if paste_back is None else paste_back
        self.finisher = FrameFinisher(pipe, paste_back, refine, watermark, invisible_watermark)
        dtype = input_dtype(pipe.generator, fast)
        # quantize or compile now (seconds, once per process), not on the first camera frame
        self.int8 = int8_live_generator(pipe) if (int8 and fast) else None
        self.compiled = self.int8 is None and bool(compile and fast) and compile_live_generator(pipe)
        if self.int8 is not None:
            self._ring = self.int8.ring(2 * self._window, size)  # quantized once per frame, read in place
            self._cond_dtype = torch.float32
        else:
            ring = torch.empty(2 * self._window, size, size, 9, dtype=dtype, device=pipe._execution_device)
            self._ring = ring.permute(0, 3, 1, 2)  # channels_last, as generate_windows reads it
            self._cond_dtype = dtype
        self._k = 0  # frames generated (the ring's write position)
        self._dub_k = 0  # frames driven in dub mode (kept by the prepare stage: it may run a frame ahead)
        self._last: dict | None = None  # the last fitted parameters (held when the face is lost)
        self.fitted: list[dict] = []  # every frame's parameters after calibration (a motion clip)
        self.frames_in = 0
        self.frames_without_face = 0
        self._recalibrate = False  # set by `recalibrate` (any thread), applied by the next `prepare`
        self._rest = self._rest_conditioning()  # the target at rest, kept for warming the generator
        self.warm_up("generate")

    def _render(self, drive) -> torch.Tensor:
        """The conditioning ``[1, 9, R, R]`` (channels_last, as the ring takes it) of a one-frame drive."""
        size = self._resolution
        cond = torch.empty(1, size, size, 9, dtype=self._cond_dtype, device=self._ring.device).permute(0, 3, 1, 2)
        self._renderer.render(drive, self.pipe.target.crop, size, albedo=self._target.albedo, out=cond)
        return cond

    @torch.no_grad()
    def _rest_conditioning(self) -> torch.Tensor:
        with _one_blas_thread():
            return self._render(self._target.slice(self._tref, self._tref + 1))

    def warm_up(self, stage: str) -> None:
        """One frame through a stage now, not on the first camera frame: ``"prepare"`` renders the target at rest,
        ``"generate"`` runs the generator and the marks on it. The first call of each in a thread (or after a change
        of torch's thread count) is slower: the generator stage took 56 against 22 ms, and the camera frames that
        arrived meanwhile were dropped. `LiveRunner` calls this in each of its threads before taking frames."""
        if stage == "prepare":
            self._rest_conditioning()
        elif self._k == 0:  # a session that has not started (it would lose its window's history)
            self.generate(self._rest)
            self._k = 0  # the first camera frame fills the window again

    @property
    def output_size(self) -> tuple[int, int]:
        """The output frames' ``(width, height)``: the target's full frame, or its crop without paste-back."""
        return self.finisher.output_size

    @property
    def generator_kind(self) -> str:
        """Which generator the session runs: ``"int8"``, ``"compiled"`` or ``"eager"``."""
        return "int8" if self.int8 is not None else ("compiled" if self.compiled else "eager")

    @property
    def calibrating(self) -> bool:
        return self._recalibrate or self.fitter is None or self.fitter.calibrating

    def recalibrate(self) -> None:
        """Measure the source's identity and neutral face again from the next second of frames. Safe to call from
        any thread while frames are being processed: it takes effect when the next frame is prepared."""
        self._recalibrate = True

    def _apply_recalibration(self) -> None:
        self._recalibrate = False
        if self.fitter is not None:
            self.fitter.recalibrate()
        self._last = None
        self._limit_state.clear()
        self.fitted = []  # the motion clip restarts: its frames are relative to one identity

    def _track(self, frame: np.ndarray) -> np.ndarray | None:
        from ..face.tracker import _to_pixels

        res = self._mesh.process(frame)
        if not res.multi_face_landmarks:
            return None
        h, w = frame.shape[:2]
        return _to_pixels(res.multi_face_landmarks[0], 0, 0, w, h)

    def _drive(self, params: dict | None):
        """The target's parameters for this frame: a one-frame `FaceSequence`."""
        tgt = self._target
        if self.mode == "dub":  # the target's own head motion (its training frames forwards and backwards)
            n = self.pipe.target.config.train_frames
            j = self._dub_k % max(2 * n - 2, 1)
            self._dub_k += 1
            i = j if j < n else 2 * n - 2 - j
            if params is None:
                return tgt.slice(i, i + 1)
            k = tgt.expression.shape[1]
            expr = self._tneu_closed + (params["expression"][:k] - self.fitter.reference["expression"][:k])
            return retarget._assemble(
                tgt,
                tgt.rotation[[i]],
                tgt.translation[[i]],
                expr[None],
                tgt.gaze[[i]],
                tgt.sh[[i]],
                self.fps,
                params["eye_openness"][None],
                {"mode": "dub"},
            )
        if params is None:  # calibrating (or no face yet): the target at rest, at its reference frame
            return tgt.slice(self._tref, self._tref + 1)
        both = {k: np.stack([self.fitter.reference[k], params[k]]) for k in params}
        src = self.fitter.sequence(both, self.fps)
        drive = retarget.reenact(
            src,
            self._target,
            self._tref,
            source_ref=0,  # the calibration's reference, for expression and pose alike
            target_neutral=self._tneu,
            transfer=self.transfer,
            target_neutral_expression=self._tneu_closed,
            limits=self._limits,
            source_pose_ref=0,
            limit_state=self._limit_state,
            expression_limits=self._expr_limits,
        )
        return drive.slice(1, 2)

    @torch.no_grad()
    def prepare(self, frame: np.ndarray, t: float | None = None) -> torch.Tensor:
        """First half of `push`: track, fit, retarget and render one frame: its conditioning ``[1, 9, R, R]``."""
        with _one_blas_thread():
            return self._prepare(frame, t)

    def _prepare(self, frame: np.ndarray, t: float | None) -> torch.Tensor:
        from ..face.live_fit import LiveFaceFitter

        if self._recalibrate:
            self._apply_recalibration()
        t = self.frames_in / self.fps if t is None else float(t)
        self.frames_in += 1
        if self.fitter is None:
            h, w = frame.shape[:2]
            self.fitter = LiveFaceFitter(w, h, self.calibration_frames)
        lm = self._track(frame)
        if lm is None:
            self.frames_without_face += 1
            params = self._last
        else:
            params = self.fitter.fit(lm, t)
            if params is not None:
                self._last = params
                self.fitted.append(params)
        return self._render(self._drive(params))

    @torch.no_grad()
    def generate(self, cond: torch.Tensor) -> np.ndarray:
        """Second half of `push`: the conditioning into the window, the generator, then `FrameFinisher` (paste-back,
        the marks)."""
        from ..models.inference import generate_windows

        w = self._window
        slot = self._k % w
        if self.int8 is not None:
            cond = self.int8.quantize(cond)
        if self._k == 0:
            self._ring[:] = cond  # history before the first frame: the first frame, as in training
        else:
            self._ring[slot] = cond[0]
            self._ring[slot + w] = cond[0]
        self._k += 1
        window = self._ring[slot + 1 : slot + 1 + w]
        if self.int8 is not None:
            out = self.int8(window.permute(1, 0, 2, 3)[None])[0]  # a view of the quantized ring
        else:
            out = generate_windows(self.pipe.generator, window, fast=self.fast, compiled=self.compiled)[0]
        return self.finisher(out[None])[0]

    def push(self, frame: np.ndarray, t: float | None = None) -> np.ndarray:
        """The target's frame for one camera frame seen at time ``t`` (seconds; default: frame count / fps)."""
        return self.generate(self.prepare(frame, t))

    def stream(self, frames, fps: float | None = None):
        """Generator form: one output frame per input frame."""
        for i, frame in enumerate(frames):
            yield self.push(frame, i / (fps or self.fps))

    def parameters(self):
        """The fitted source parameters since the last calibration, as a `FaceSequence` (a `dvp track` motion
        clip that can drive any target later)."""
        if not self.fitted or self._recalibrate:
            return None
        seq = self.fitter.sequence({k: np.stack([p[k] for p in self.fitted]) for k in self.fitted[0]}, self.fps)
        seq.info = {"source": "live", "frames": len(self.fitted)}
        return seq


class LiveRunner:
    """A session behind a one-frame mailbox: `offer` never blocks; a frame that arrives while another waits
    replaces it (the waiting one is dropped). Outputs go to ``on_output(index, frame, arrival_time)`` in order;
    a recording writes the previous output again for dropped indices.

    ``pipelined``: `LiveSession.prepare` (face mesh, fit, render) of the next frame runs in a thread of its own
    while the generator works on the last one, each stage with one torch thread, and a prepared frame waits in a
    second one-frame mailbox (replaced, and counted as dropped, if the generator is still busy). On two Intel
    cores with the int8 demo generator, talking-d3 played at 30 fps and recorded (`bench_live.py`, three runs):
    28.4-28.7 fps, 4.3-5.3% dropped, latency p50 / p95 50-55 / 82-91 ms, against 22-27 fps and 9-26% one stage
    after the other. With two torch threads for the generator the stages fought over the cores (a prototype
    without recording: 24.9 fps, 17% dropped, p95 124 ms against 29.7 fps, 1%, 66 ms with one), as they did with
    the float generator on two AMD cores (27.1-28.3 fps and 5-8.5% dropped against 27.1-28.8 fps and 4-9.5%,
    latency p50 118-123 ms against 34-52 ms). `run_paced` chooses it with `pipelined_by_default`.

    Before it takes a frame, each stage runs once in the thread it will run in (`LiveSession.warm_up`): the first
    call there was 56-68 ms instead of 22, and the camera frames that arrived meanwhile were dropped.

    ``thread=False``: no generator thread of its own; the caller runs `serve` (frames are then offered from another
    thread). `run_paced` does this so that the generator runs in the thread that made the session: torch's CPU
    work is slower in a thread other than the first one to use its OpenMP pool (2 Intel cores, the int8 demo
    generator with two torch threads: 16.6-18.8 ms a window against 10.1 when every call is made in one thread;
    the float one 50 against 45 ms).
    """

    def __init__(self, session: LiveSession, on_output=None, thread: bool = True, pipelined: bool = False):
        self.session = session
        self.on_output = on_output
        self.pipelined = pipelined
        self._cv = threading.Condition()
        self._pending = None  # the next camera frame
        self._prepared = None  # pipelined: the next prepared frame
        self._closed = False  # no more camera frames
        self._prepare_done = not pipelined  # pipelined: the prepare thread has finished
        self.dropped = 0
        self.latencies: list[float] = []
        self.latest: np.ndarray | None = None
        self.error: BaseException | None = None
        self._torch_threads = torch.get_num_threads()  # restored by serve() / close() (pipelined sets 1)
        self._threads = []
        if pipelined:
            self._threads.append(threading.Thread(target=self._prepare_loop, name="dvp-live-prepare", daemon=True))
        if thread:
            self._threads.append(threading.Thread(target=self._run, args=(True,), name="dvp-live", daemon=True))
        self._warm = threading.Barrier(len(self._threads) + 1, timeout=60)
        for t in self._threads:
            t.start()
        try:
            if not thread:  # the caller serves: its thread runs the generator
                self._warm_generator()
            self._warm.wait()  # every stage has run once in the thread it runs in
        except BaseException:
            self._warm.abort()
            self.finish()
            self._join()
            if self.error is not None and not isinstance(self.error, threading.BrokenBarrierError):
                raise self.error from None  # a thread's own error, the cause of the broken barrier
            raise

    def _warm_generator(self) -> None:
        if self.pipelined:
            torch.set_num_threads(1)  # this thread's share: the prepare stage runs on the other core
        self.session.warm_up("generate")

    def offer(self, index: int, frame: np.ndarray, t: float) -> None:
        with self._cv:
            if self._pending is not None:
                self.dropped += 1
            self._pending = (index, frame, t, time.perf_counter())
            self._cv.notify_all()

    def _next(self, slot: str, done) -> tuple | None:
        """Wait for the item in mailbox ``slot`` and take it; None once ``done()`` and the mailbox is empty."""
        with self._cv:
            while getattr(self, slot) is None and not done() and self.error is None:
                self._cv.wait()
            item = getattr(self, slot)
            setattr(self, slot, None)
            return item if self.error is None else None

    def _prepare_loop(self) -> None:
        torch.set_num_threads(1)  # this thread's share: the generator runs on the other core
        try:
            self.session.warm_up("prepare")
            self._warm.wait()
            while (item := self._next("_pending", lambda: self._closed)) is not None:
                index, frame, t, arrived = item
                cond = self.session.prepare(frame, t)
                with self._cv:
                    if self._prepared is not None:
                        self.dropped += 1
                    self._prepared = (index, cond, arrived)
                    self._cv.notify_all()
        except BaseException as err:  # noqa: BLE001 - re-raised by serve() / close()
            self.error = err
            self._warm.abort()
        finally:
            with self._cv:
                self._prepare_done = True
                self._cv.notify_all()

    def _run(self, own_thread: bool = False) -> None:
        try:
            if own_thread:
                self._warm_generator()
                self._warm.wait()
            elif self.pipelined:
                torch.set_num_threads(1)  # as `_warm_generator` set it (serve() runs in the thread that made this)
            while True:
                if self.pipelined:
                    item = self._next("_prepared", lambda: self._prepare_done)
                    if item is None:
                        return
                    index, cond, arrived = item
                    out = self.session.generate(cond)
                else:
                    item = self._next("_pending", lambda: self._closed)
                    if item is None:
                        return
                    index, frame, t, arrived = item
                    out = self.session.push(frame, t)
                self.latencies.append(time.perf_counter() - arrived)
                self.latest = out
                if self.on_output is not None:
                    self.on_output(index, out, arrived)
        except BaseException as err:  # noqa: BLE001 - re-raised by serve() / close()
            with self._cv:
                self.error = err
                self._cv.notify_all()
            self._warm.abort()

    def serve(self) -> None:
        """Process offered frames in the calling thread until `finish` has been called and nothing waits."""
        self._run()
        self._join()
        if self.error is not None:
            raise self.error

    def finish(self) -> None:
        """No more frames: the ones still waiting are processed, then `serve` (or the threads) return."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def _join(self) -> None:
        for t in self._threads:
            if t is not threading.current_thread():
                t.join()
        if self.pipelined:
            torch.set_num_threads(self._torch_threads)

    def close(self) -> None:
        """Process the frames still waiting, stop the threads, re-raise an error of theirs."""
        self.finish()
        self._join()
        if self.error is not None:
            raise self.error


class Recording:
    """Writes a live session's outputs on the source's timeline: one output frame per input frame, the
    previous output repeated for dropped input frames (`LiveRunner` calls `add`)."""

    def __init__(self, writer):
        self.writer = writer
        self.next_index = 0
        self.last: np.ndarray | None = None

    def add(self, index: int, frame: np.ndarray, _arrived=None) -> None:
        fill = self.last if self.last is not None else frame  # dropped before the first output: the first
        while self.next_index < index:
            self.writer.write(fill)
            self.next_index += 1
        self.writer.write(frame)
        self.last = frame
        self.next_index = index + 1

    def finish(self, total: int) -> None:
        """Fill to ``total`` frames (the inputs dropped after the last processed one)."""
        while self.next_index < total and self.last is not None:
            self.writer.write(self.last)
            self.next_index += 1


def pipelined_by_default(session: LiveSession) -> bool:
    """Whether `run_paced` runs the two stages side by side (`LiveRunner`): with the int8 generator on a CPU with at
    least two cores. Not with the float one: on one torch thread it takes longer than both stages on two (2 Intel
    cores, demo, dub, talking-d3 at 30 fps: 11.6 fps and 61% dropped side by side, 17.5 fps and 41% one after the
    other)."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return session.int8 is not None and cores >= 2  # int8 runs on a CPU only


def run_paced(
    session: LiveSession, frames, fps: float, writer=None, realtime: bool = True, pipelined: bool | None = None
) -> dict:
    """Feed ``frames`` to a session as a camera would: one every ``1 / fps`` seconds (``realtime``), through a
    `LiveRunner`, recording to ``writer`` on the source's timeline. Returns frames in / out / dropped,
    achieved fps and latency percentiles (ms, from a frame's arrival to its output)."""
    rec = Recording(writer) if writer is not None else None
    if writer is not None and hasattr(writer, "open"):  # the encoder starts before the camera does
        writer.open(*session.output_size)
    if pipelined is None:
        pipelined = pipelined_by_default(session)
    runner = LiveRunner(session, on_output=rec.add if rec is not None else None, thread=False, pipelined=pipelined)
    stop, fed, failed = threading.Event(), [0], []

    def camera():  # the frames arrive from this thread; the session runs in the caller's (see `LiveRunner`)
        try:
            for i, frame in enumerate(frames):
                if stop.is_set():
                    return
                if realtime:
                    wait = start + i / fps - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                runner.offer(i, frame, i / fps)
                fed[0] += 1
        except BaseException as err:  # noqa: BLE001 - a reader error: re-raised in the caller's thread
            failed.append(err)
        finally:
            runner.finish()

    feeder = threading.Thread(target=camera, name="dvp-camera", daemon=True)
    start = time.perf_counter()
    feeder.start()
    try:
        runner.serve()
    finally:
        stop.set()
        feeder.join()
    if failed:
        raise failed[0]
    n = fed[0]
    wall = time.perf_counter() - start
    if rec is not None:
        rec.finish(n)
    lat = np.array(runner.latencies) * 1000
    out = len(runner.latencies)
    return {
        "frames_in": n,
        "frames_out": out,
        "frames_dropped": runner.dropped,
        "dropped_fraction": round(runner.dropped / max(n, 1), 4),
        "fps": round(out / max(wall, 1e-9), 2),
        "latency_p50_ms": round(float(np.percentile(lat, 50)), 1) if out else None,
        "latency_p95_ms": round(float(np.percentile(lat, 95)), 1) if out else None,
        "frames_recorded": rec.next_index if rec is not None else 0,
        "frames_without_face": session.frames_without_face,
    }
