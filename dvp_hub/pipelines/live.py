"""Live reenactment: the target follows a camera frame by frame (`DeepVideoPortraitPipeline.live`).

The generator only looks at the current and the ``Nw - 1`` previous conditioning frames, so the whole
path can run causally, one frame at a time:

1. mediapipe's face mesh in video (tracking) mode on the frame;
2. `LiveFaceFitter`: calibration on the first second (identity and neutral reference), then a per-frame
   fit against it with One-Euro smoothing;
3. retargeting by the same per-frame functions as offline (`retarget.reenact_frame`, `retarget.dub_frame`), with
   the calibration's reference as the source's anchor and the limits' pulls smoothed causally;
4. one render, written into a ring buffer of the last ``Nw`` conditioning frames (each frame is written
   twice, at ``k mod Nw`` and ``k mod Nw + Nw``, so the window is always one contiguous slice: no
   99-channel stack is rebuilt, `generate_windows` reads it in place);
5. the generator on that window: on a CPU with PyTorch's x86 quantized engine in int8 (`models.int8`: the ring
   is then kept quantized), else its levels after the first compiled by inductor where a C++ compiler is there
   (`models.inference.compiled_rest`);
6. `finish.FrameFinisher`, as offline: pasted back into the target's full frame, the visible label and the
   invisible watermark.

While calibrating, the target is shown at its own reference pose. A frame without a face holds the last
parameters. `LiveRunner` puts a session behind a one-frame mailbox: frames that arrive while one is being
processed replace the waiting one (dropped), so latency never grows, and a recording repeats the last
output for each dropped frame so it lasts as long as what was filmed.
"""

from __future__ import annotations

import numpy as np
import torch

from ..face.live_fit import LiveFaceFitter
from ..face.tracker import _to_pixels, tracking_mesh
from ..models.inference import generate_windows, input_dtype
from ..motion import retarget
from ..perf import one_blas_thread
from ..profile import StageTimes, timed
from ..render.conditioning import NUM_CHANNELS, ConditioningRenderer
from .finish import FrameFinisher
from .live_generator import compile_live_generator, int8_live_generator, live_model
from .options import RunOptions


class LiveSession:
    """A streaming session: ``push(frame) -> output frame`` (``H x W x 3`` uint8 camera frame in; out, the target's
    full frame, or its crop without paste-back, marked as every output). Made by `DeepVideoPortraitPipeline.live`."""

    def __init__(
        self,
        pipe,
        fps: float = 30.0,
        options: RunOptions | None = None,
        calibration_seconds: float = 1.0,
        compile: bool = True,
        int8: bool = True,
        light: bool = True,
    ):
        opts = options if options is not None else RunOptions(refine=False)
        self.pipe, self.fps, self.options = pipe, float(fps), opts
        self.mode, self.transfer, self.fast = opts.mode, opts.transfer, opts.fast
        self.calibration_frames = max(1, int(round(calibration_seconds * fps)))
        self._mesh = tracking_mesh()
        self.fitter = None  # made on the first frame (it needs the frame size)
        state = pipe.target_state
        self._target = state.sequence
        self._tref = pipe.target.config.reference_frame
        self._limits = state.pose_limits if opts.limit_pose else None  # the head stays where the target's was
        # the face near its trained ones
        self._expr_limits = state.expression_limits if opts.limit_expression else None
        self._limit_state: dict = {}  # both limits' pulls, smoothed causally frame to frame
        self._renderer = ConditioningRenderer(device=pipe._execution_device)
        self.generator = live_model(pipe, light)  # the distilled live generator where the target has one
        self.light = self.generator is not pipe.generator
        self._window = self.generator.config.temporal_window
        size = self._resolution = int(pipe.target.config.resolution)
        paste_back = pipe.has_reference if opts.paste_back is None else opts.paste_back
        self.finisher = FrameFinisher(pipe, paste_back, opts.refine, opts.watermark, opts.invisible_watermark)
        dtype = input_dtype(self.generator, opts.fast)
        # quantize or compile now (seconds, once per process), not on the first camera frame
        self.int8 = int8_live_generator(pipe, self.generator) if (int8 and opts.fast) else None
        self.compiled = (
            self.int8 is None and bool(compile and opts.fast) and compile_live_generator(pipe, self.generator)
        )
        if self.int8 is not None:
            self._ring = self.int8.ring(2 * self._window, size)  # quantized once per frame, read in place
            self._cond_dtype = torch.float32
        else:
            ring = torch.empty(2 * self._window, size, size, NUM_CHANNELS, dtype=dtype, device=pipe._execution_device)
            self._ring = ring.permute(0, 3, 1, 2)  # channels_last, as generate_windows reads it
            self._cond_dtype = dtype
        self._k = 0  # frames generated (the ring's write position)
        self._dub_k = 0  # frames driven in dub mode (kept by the prepare stage: it may run a frame ahead)
        self._last: dict | None = None  # the last fitted parameters (held when the face is lost)
        self._anchor: retarget.SourceAnchor | None = None  # the calibration's reference (`_source_anchor`)
        self.fitted: list[dict] = []  # every frame's parameters after calibration (a motion clip)
        self.frames_in = 0
        self.frames_without_face = 0
        self._recalibrate = False  # set by `recalibrate` (any thread), applied by the next `prepare`
        self.last_drive = None
        self._rest = self._rest_conditioning()  # the target at rest, kept for warming the generator
        self.times = None
        self.warm_up("generate")

    def _render(self, drive) -> torch.Tensor:
        """The conditioning ``[1, 9, R, R]`` (channels_last, as the ring takes it) of a one-frame drive."""
        size = self._resolution
        cond = torch.empty(1, size, size, NUM_CHANNELS, dtype=self._cond_dtype, device=self._ring.device)
        cond = cond.permute(0, 3, 1, 2)
        self._renderer.render(drive, self.pipe.target.crop, size, albedo=self._target.albedo, out=cond)
        return cond

    @torch.no_grad()
    def _rest_conditioning(self) -> torch.Tensor:
        with one_blas_thread():
            return self._render(self._target.slice(self._tref, self._tref + 1))

    def warm_up(self, stage: str) -> None:
        """One frame through a stage now, not on the first camera frame: ``"prepare"`` renders the target at rest,
        ``"generate"`` runs the generator and the marks on it, ``"generate_crop"`` the generator alone, ``"finish"``
        pastes back and marks a blank crop. The first call of each stage in a thread (or after a
        change of torch's thread count) is much slower than the next, and camera frames arriving meanwhile would be
        dropped; `LiveRunner` calls this in each of its threads before taking frames."""
        if stage == "prepare":
            self._rest_conditioning()
        elif stage == "finish":
            size = int(self.pipe.target.config.resolution)
            self.finish(torch.zeros(1, 3, size, size, device=self._rest.device), self._rest)
            self.finisher.reset()
        elif self._k == 0:  # "generate" / "generate_crop", not once started (it would lose its window's history)
            self.generate(self._rest) if stage == "generate" else self.generate_crop(self._rest)
            self._k = 0  # the first camera frame fills the window again
            self.finisher.reset()  # and its paste-back mask owes nothing to the rest pose

    @property
    def output_size(self) -> tuple[int, int]:
        """The output frames' ``(width, height)``: the target's full frame, or its crop without paste-back."""
        return self.finisher.output_size

    @property
    def changed_region(self) -> tuple[int, int, int, int] | None:
        """The box outside which every output frame is the same (`FrameFinisher.changed_region`), or None."""
        return self.finisher.changed_region

    @property
    def generator_kind(self) -> str:
        """How the session runs its generator: ``"int8"``, ``"compiled"`` or ``"eager"``."""
        return "int8" if self.int8 is not None else ("compiled" if self.compiled else "eager")

    @property
    def generator_label(self) -> str:
        """Which generator runs and how, for reports: ``generator_kind``, after ``"light "`` for the distilled one."""
        return ("light " if self.light else "") + self.generator_kind

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
        self._anchor = None
        self._limit_state.clear()
        self.fitted = []  # the motion clip restarts: its frames are relative to one identity

    def _track(self, frame: np.ndarray) -> np.ndarray | None:
        with timed(self.times, "face mesh"):
            res = self._mesh.process(frame)
        if not res.multi_face_landmarks:
            return None
        h, w = frame.shape[:2]
        return _to_pixels(res.multi_face_landmarks[0], 0, 0, w, h)

    def _source_anchor(self) -> retarget.SourceAnchor:
        """The calibration's reference frame as the anchor of relative motion (made once per calibration)."""
        if self._anchor is None:
            k = self._target.expression.shape[1]
            self._anchor = retarget.SourceAnchor.of_frame(self.fitter.reference, self.fitter.identity, k)
        return self._anchor

    def _drive(self, params: dict | None):
        """The target's parameters for this frame, as offline (`retarget.reenact_frame` / `retarget.dub_frame`, the
        limits smoothed causally): a one-frame `FaceSequence`."""
        tgt, tref, state = self._target, self._tref, self.pipe.target_state
        if self.mode == "dub":  # the target's own head motion (its training frames forwards and backwards)
            n, step = self.pipe.target.config.train_frames, self._dub_k
            self._dub_k += 1
            if params is None:
                i = retarget.pingpong_index(step, n)
                return tgt.slice(i, i + 1)
            driven = retarget.dub_frame(params, step, self._source_anchor(), state.anchor, n)
            driven.pop("frame")
            driven = {k: v[None] for k, v in driven.items()}
        else:
            if params is None:  # calibrating (or no face yet): the target at rest, at its reference frame
                return tgt.slice(tref, tref + 1)
            driven = retarget.reenact_frame(params, self._source_anchor(), state.anchor, self.transfer)
            driven = {k: v[None] for k, v in driven.items()}
            driven, _, _ = retarget.apply_limits(driven, self._limits, self._expr_limits, state=self._limit_state)
            driven["sh"] = tgt.sh[[tref]]
        return retarget.assemble(tgt, driven, self.fps, params["eye_openness"][None], {"mode": self.mode})

    @torch.no_grad()
    def prepare(self, frame: np.ndarray, t: float | None = None) -> torch.Tensor:
        """First half of `push`: track, fit, retarget and render one frame: its conditioning ``[1, 9, R, R]``."""
        with one_blas_thread():
            return self._prepare(frame, t)

    def _prepare(self, frame: np.ndarray, t: float | None) -> torch.Tensor:
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
            with timed(self.times, "fit"):
                params = self.fitter.fit(lm, t)
            if params is not None:
                self._last = params
                self.fitted.append(params)
        with timed(self.times, "retarget"):
            self.last_drive = self._drive(params)  # the one-frame `FaceSequence` that drives the target (for checks)
        with timed(self.times, "render"):
            return self._render(self.last_drive)

    def generate(self, cond: torch.Tensor) -> np.ndarray:
        """Second half of `push`: `generate_crop`, then `finish`."""
        return self.finish(*self.generate_crop(cond))

    def finish(self, out: torch.Tensor, rendered: torch.Tensor) -> np.ndarray:
        """`FrameFinisher` on a generated crop ``[1, 3, R, R]`` and its conditioning: paste-back, the marks."""
        return self.finisher(out, rendered)[0]

    @torch.no_grad()
    def generate_crop(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The conditioning ``[1, 9, R, R]`` into the window, then the generator: ``(crop [1, 3, R, R], cond)``."""

        w = self._window
        slot = self._k % w
        rendered = cond
        if self.int8 is not None:
            cond = self.int8.quantize(cond)
        if self._k == 0:
            self._ring[:] = cond  # history before the first frame: the first frame, as in training
        else:
            self._ring[slot] = cond[0]
            self._ring[slot + w] = cond[0]
        self._k += 1
        window = self._ring[slot + 1 : slot + 1 + w]
        with timed(self.times, "generator"):
            if self.int8 is not None:
                out = self.int8(window.permute(1, 0, 2, 3)[None])[0]  # a view of the quantized ring
            else:
                out = generate_windows(self.generator, window, fast=self.fast, compiled=self.compiled)[0]
        return out[None], rendered

    def start_profile(self) -> StageTimes:
        """Time every stage of the frames from now on (face mesh, fit, retarget, render, generator, refine,
        paste-back, marks); returns the `profile.StageTimes` that collects them."""
        self.times = self.finisher.times = StageTimes()
        return self.times

    def close(self) -> None:
        """Release what the session holds outside Python's memory (the paste-back's segmenter)."""
        self.finisher.close()

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
