"""`DeepVideoPortraitPipeline`: source video -> face parameters -> conditioning -> target's frames."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput, logging

from ..detail_bank import DetailBank
from ..errors import InputError, TargetLoadError
from ..models import FaceRefiner, PortraitTarget, RenderingToVideoGenerator
from ..models.inference import generate_windows
from ..motion.editing import control_directions, control_ranges, edited_frame, pose_coupling, pose_ranges
from ..profile import StageTimes
from ..render.conditioning import ConditioningRenderer
from ..video import VideoWriter
from . import steps
from .finish import FrameFinisher
from .live import LiveSession
from .options import RunOptions
from .reference import load_background
from .saving import PipelineSaving
from .target_folder import (  # noqa: F401 - public names
    DEMO_DIR,
    check_folder,
    check_live_generator,
    reference_file,
    resolve_target,
    weights_variant,
)
from .target_state import TargetState

logger = logging.get_logger(__name__)


@dataclass
class DeepVideoPortraitPipelineOutput(BaseOutput):
    """frames: ``(1, F, H, W, 3)`` floats in [0, 1] ("np"), ``(1, F, 3, H, W)`` ("pt") or a list of PIL lists;
    None when written straight to ``output_video``. fps: frame rate. parameters: the `FaceSequence` that
    drove the target. stats: frames, timings, the source's neutral frame, interpolated frames and the pose
    range report (`retarget.pose_range`)."""

    frames: object
    fps: float
    parameters: object = None
    stats: dict | None = None


class DeepVideoPortraitPipeline(PipelineSaving, DiffusionPipeline):
    r"""Deep Video Portraits: drive a target person with a source actor's head pose, expression and gaze.

    Components:
        generator ([`RenderingToVideoGenerator`]): the target's rendering-to-video network.
        target ([`PortraitTarget`]): the target's face model, crop, camera and training sequence.
        refiner ([`FaceRefiner`], optional): takes the generator's crop to twice its size with the target's detail.

    Example:
        ```py
        >>> from dvp_hub import DeepVideoPortraitPipeline, export_to_video
        >>> pipe = DeepVideoPortraitPipeline.from_pretrained("demo")
        >>> out = pipe(source_video="../shared/data/talking-d3.mp4", max_frames=30)
        >>> export_to_video(out.frames[0], "reenacted.mp4", fps=out.fps, audio_from="../shared/data/talking-d3.mp4")
        ```
    """

    model_cpu_offload_seq = "generator->refiner"
    _optional_components = ["refiner", "live_generator"]

    def __init__(self, generator: RenderingToVideoGenerator, target: PortraitTarget, refiner: FaceRefiner = None,
                 live_generator: RenderingToVideoGenerator = None):  # fmt: skip
        super().__init__()
        self.register_modules(generator=generator, target=target, refiner=refiner, live_generator=live_generator)
        self.reference: str | None = None  # the target's full frame (`target_folder.REFERENCE_FILES`)
        self.detail_bank: DetailBank | None = None  # its real frames' detail (`detail_bank.BANK_FILES`)

    def provenance(self, **extra) -> dict:
        """What the Content Credentials of this target's outputs say about it: name and model card."""
        origin = getattr(self, "origin", None) or "local"
        if origin == "demo":
            card = "dvp_hub bundled demo target (dvp_hub/assets/demo_target/README.md)"
        elif os.path.isdir(origin) or origin == "local":
            card = f"{origin}/README.md"
        else:
            card = f"https://huggingface.co/{origin}"
        return {"target": self.target.config.name, "model_card": card, **extra}

    @property
    def target_state(self) -> TargetState:
        """The frozen `TargetState` of the current target, made once per target."""
        state = self.__dict__.get("_target_cache")
        if state is None or state.target is not self.target:
            state = self.__dict__["_target_cache"] = TargetState.from_target(self.target)
            self.__dict__["_edit_cache"] = {}  # a new target: new editing directions, renderer, finishers
        return state

    @property
    def has_reference(self) -> bool:
        """Whether the target folder carries its full frame (``reference.png`` or ``reference.mp4``)."""
        return self.reference is not None

    def background(self) -> np.ndarray:
        """The target's reference frame at its native size (``H x W x 3`` uint8), decoded once per file."""
        if self.reference is None:
            raise InputError("this target has no reference frame (reference.png in its folder): ask for the crop.")
        cached = self.__dict__.get("_background_cache")
        if cached is None or cached[0] != self.reference:
            cam = self.target.camera
            index = self.target.source_start + self.target.config.reference_frame  # a video: the target's own
            frame = load_background(self.reference, cam.width, cam.height, index)
            cached = self.__dict__["_background_cache"] = (self.reference, frame)
        return cached[1]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str, **kwargs) -> "DeepVideoPortraitPipeline":
        """Load from ``demo``, a target's name in the local targets folder (`dvp_hub.targets`), a local folder, or a
        Hub repo id (downloaded with ``snapshot_download``).

        Accepts ``dtype``, ``variant`` ("fp16"), ``revision``, ``cache_dir``, ``local_files_only``, ``token``, and
        ``local_paths=False`` to refuse folder paths (a server loading what visitors name).
        """
        hub = {k: kwargs.pop(k) for k in ("revision", "cache_dir", "local_files_only", "token") if k in kwargs}
        local_paths = kwargs.pop("local_paths", True)
        folder = resolve_target(str(pretrained_model_name_or_path), local_paths, **hub)
        if not local_paths:  # a visitor's name: the errors say nothing of the server's folders
            try:
                pipe = cls.from_pretrained(folder, **kwargs)
            except TargetLoadError:
                raise TargetLoadError(f"{pretrained_model_name_or_path}: not a loadable dvp_hub target.") from None
            pipe.origin = str(pretrained_model_name_or_path)  # demo, a name or a Hub id: for the credentials
            return pipe
        check_folder(folder)
        if "torch_dtype" in kwargs:
            kwargs["dtype"] = kwargs.pop("torch_dtype")
        variant = kwargs.get("variant")
        gen_dir = os.path.join(folder, "generator")
        if variant is None and weights_variant(gen_dir) == "fp16":
            variant = kwargs["variant"] = "fp16"  # a target shipped in fp16 only (the bundled demo)
            kwargs.setdefault("dtype", torch.float32)
        if variant and not os.path.isfile(
            os.path.join(folder, "generator", f"diffusion_pytorch_model.{variant}.safetensors")
        ):
            raise TargetLoadError(
                f"{pretrained_model_name_or_path}: has no {variant!r} weights; load it without variant=."
            )
        try:
            quiet = not logging.is_progress_bar_enabled()
            logging.disable_progress_bar()  # two small components load in ~0.1 s: a bar would be noise
            try:
                pipe = super().from_pretrained(folder, use_safetensors=True, **kwargs)
            finally:
                None if quiet else logging.enable_progress_bar()
        except (OSError, ValueError, RuntimeError, KeyError) as err:
            raise TargetLoadError(
                f"{pretrained_model_name_or_path}: cannot load the target ({str(err).splitlines()[0][:200]})."
            ) from None
        if pipe.target.dtype != torch.float32:
            pipe.target.to(torch.float32)  # face parameters stay in full precision
        pipe.generator.eval()
        pipe.origin = str(pretrained_model_name_or_path)  # demo, a folder or a Hub id: for the credentials
        if pipe.live_generator is not None:
            check_live_generator(pipe.generator.config, pipe.live_generator.config, folder)
        for small in (pipe.refiner, pipe.live_generator):  # kept in float32 whatever the generator's dtype
            if small is not None:
                torch.nn.Module.to(small, torch.float32).eval()  # Module.to: no ModelMixin cast warning
        pipe.reference = reference_file(folder)
        pipe.detail_bank = DetailBank.load(folder)
        return pipe

    @torch.no_grad()
    def edit(
        self,
        frame_index: int = 0,
        yaw: float = 0.0,
        pitch: float = 0.0,
        roll: float = 0.0,
        expression: dict | None = None,
        gaze: tuple[float, float] = (0.0, 0.0),
        watermark: bool = True,
        paste_back: bool | None = None,
    ):
        """One edited frame of the target (interactive editing), ``H x W x 3`` uint8, marked like every output.

        Starts from the target's training frame ``frame_index``; yaw / pitch / roll (degrees) rotate the head in
        camera axes; ``expression`` maps the named controls of `motion.editing.CONTROLS` ("jaw_open",
        "smile", "brows", "blink") or ``"c<k>"`` (coefficient k) to amounts in standard deviations; ``gaze``
        shifts both irises (x, y) in eye widths. The window repeats the edited frame, so the call is one
        render and one generator pass. ``paste_back``: the target's full frame (default where it has one).
        """

        # Slider calls: the target's control directions, a renderer and the finisher are made once.
        tgt = self.target_state.sequence
        state = self.__dict__["_edit_cache"]
        owner = (id(self), id(self.refiner), id(self.generator), id(self.detail_bank))  # finishers hold these
        if state.get("owner") != owner:
            state = self.__dict__["_edit_cache"] = {"owner": owner}
        if "renderer" not in state:
            state["renderer"] = ConditioningRenderer(device=self._execution_device)
        if not 0 <= frame_index < len(tgt):
            raise InputError(f"frame_index={frame_index} is outside the target's {len(tgt)} frames.")
        trained = slice(0, self.target.config.train_frames)
        if expression and "directions" not in state:
            state["directions"] = control_directions(tgt, trained)
        if "coupling" not in state:
            state["coupling"] = pose_coupling(tgt, trained)
        paste_back = self.has_reference if paste_back is None else paste_back
        key = ("finisher", paste_back, watermark)
        if key not in state:
            state[key] = FrameFinisher(
                self, paste_back, watermark=watermark, invisible_watermark=watermark, segment_every=1
            )  # stills: each one segmented, whichever slider call comes first
        one = edited_frame(
            tgt, frame_index, yaw, pitch, roll, expression or {}, gaze, state.get("directions"), state["coupling"]
        )
        cond = state["renderer"].render(one, self.target.crop, self.target.config.resolution)
        clip = cond.expand(self.generator.config.temporal_window, -1, -1, -1)  # the window repeats the frame
        finisher = state[key]
        finisher.reset()  # a still: no smoothing with the previous slider position
        return finisher(generate_windows(self.generator, clip), cond)[0]

    def edit_ranges(self, frame_index: int = 0) -> dict:
        """What `edit` can apply to training frame ``frame_index`` and stay within what the target was trained on:
        ``{"yaw": (lo, hi), "pitch": ..., "roll": ...}`` in degrees (`editing.pose_ranges`), then ``{"jaw_open":
        (lo, hi), "smile": ..., "brows": ..., "blink": ...}`` in the controls' standard deviations
        (`editing.control_ranges`)."""

        seq = self.target_state.sequence
        if not 0 <= frame_index < len(seq):
            raise InputError(f"frame_index={frame_index} is outside the target's {len(seq)} frames.")
        trained = slice(0, self.target.config.train_frames)
        return {**pose_ranges(seq, frame_index, trained), **control_ranges(seq, frame_index, trained)}

    def live(
        self,
        fps: float = 30.0,
        calibration_seconds: float = 1.0,
        compile: bool = True,
        int8: bool = True,
        light: bool = True,
        options: RunOptions | None = None,
        **kwargs,
    ):
        """A live session (`pipelines.live.LiveSession`): ``session.push(frame)`` returns the target's frame for
        one camera frame, causally (calibration on the first ``calibration_seconds``, `recalibrate()` to redo it);
        ``session.stream(frames)`` is the generator form; ``session.parameters()`` the motion.

        ``options`` (or its fields as keyword arguments: ``mode``, ``transfer``, ``limit_pose``, ``paste_back``,
        ``watermark``, ...) as for ``__call__``; ``refine`` is off by default live (on two CPU cores the refiner
        does not fit in a camera frame's time); the fields that shape a clip (``max_frames``, ``output_type``,
        ``batch_size``, ``chunk_size``, ``overlap``, ``progress``, ``neutral_frame``) have no effect live. ``int8``: on a CPU with PyTorch's x86 quantized engine, the
        generator quantized to int8 (calibrated on the target's own frames when the session starts, once per
        process; ``DVP_INT8=0`` turns it off); else ``compile``: compiled by inductor (eager where no C++ compiler
        is found, or with ``DVP_COMPILE=0``). ``light``: the target's distilled live generator where its folder has
        one (``live_generator``, `dvp_hub.distill`: half the channels at every level, trained to give the full
        generator's frames); False runs the full generator.
        """
        options = RunOptions.resolve(options, kwargs, refine=False)
        return LiveSession(self, fps, options, calibration_seconds, compile=compile, int8=int8, light=light)

    @torch.no_grad()
    def __call__(
        self,
        source_video=None,
        source_parameters=None,
        output_video=None,
        return_dict=True,
        options: RunOptions | None = None,
        callback_on_frame=None,
        **kwargs,
    ):
        r"""Drive the target with a source video (or a saved `dvp track` parameter file).

        Args:
            source_video: path of the source (driving) video.
            source_parameters: a `FaceSequence` or the path of a parameter file from ``dvp track``.
            output_video: write the result here (mp4 with the source's audio, labelled and signed) instead of
                returning frames; memory then stays constant whatever the source's length.
            options: a `RunOptions`; or its fields as keyword arguments (``mode="dub"``, ``max_frames=90``,
                ``paste_back=False``, ``transfer=("expression",)``, ``limit_pose=False``, ...; see `RunOptions`).
            callback_on_frame: ``fn(index, frame, conditioning)``, called with every output frame (``H x W x 3``
                uint8, as returned or written) and its conditioning (``[9, R, R]`` in [-1, 1], on the pipeline's
                device and in its compute dtype, valid in the call only), in order, as made (a second video in one
                pass); with ``overlap``, from a pipeline thread, in a copy of the caller's context.

        Returns:
            `DeepVideoPortraitPipelineOutput` (or a tuple ``(frames, fps)`` with ``return_dict=False``): the
            target's full frames at its native size where it has a reference frame (else its crop), refined when
            it has a refiner, marked synthetic unless asked otherwise; None as frames with ``output_video``.
        """
        opts = RunOptions.resolve(options, kwargs)
        t_start = time.perf_counter()
        # 1. Check the arguments and the source (probed, not decoded): a bad file fails here, at once
        reader = steps.check_inputs(source_video, source_parameters, output_video, opts.max_frames)
        paste_back = self.has_reference if opts.paste_back is None else opts.paste_back
        if paste_back and not self.has_reference:
            raise InputError("paste_back needs the target's full frame (reference.png in its folder); ask for the crop.")
        show = opts.progress and not getattr(self, "_progress_bar_config", {}).get("disable", False)
        stages = 2 if reader is not None else 1
        times = StageTimes() if opts.profile else None
        # The finisher and the int8 calibration read only the target: prepared beside tracking
        known = len(reader) if reader is not None else None  # a parameter file's length is known once loaded
        prepared = steps.start_setup(self, opts, paste_back, known)
        try:  # 2. Track the source and fit the face model; 3. retarget its motion on the target's face
            source, drive, pose_report = steps.drive_motion(self, reader, source_parameters, opts, show, times)
        except BaseException:
            if prepared is not None:  # wait for it, so that nothing of the run goes on behind the error
                steps.discard_prepared(prepared)
            raise
        # 4. Render the conditioning, generate, refine, paste back, mark and write, chunk by chunk
        finisher, int8 = prepared() if prepared else steps.prepare_finisher(self, opts, paste_back, len(drive))
        finisher.times = times
        writer, frames = None, []
        try:
            if output_video:
                provenance = self.provenance(mode=opts.mode, source=source_video or source_parameters)
                writer = VideoWriter(output_video, drive.fps, audio_from=source_video, provenance=provenance)
            bar = steps.stage_bar(self, f"[{stages}/{stages}] generating the target", len(drive)) if show else None
            gen_seconds, gen_kind = steps.generate_and_write(
                self, drive, finisher, writer, frames, opts, int8, bar, times, callback_on_frame
            )
        finally:
            finisher.close()
        # 5. Output
        result = None if writer is not None else steps.collect_frames(frames, opts.output_type)
        total = time.perf_counter() - t_start
        stats = {
            "frames": len(drive),
            "seconds": round(total, 3),
            "fps": round(len(drive) / max(total, 1e-9), 2),
            "generator_seconds": round(gen_seconds, 3),
            "generator": gen_kind,
            "source_reference_frame": drive.info.get("source_reference_frame"),
            "interpolated_frames": int(source.info.get("interpolated_frames", 0)),
            **pose_report,
        }
        if times is not None:
            stats["profile"] = times.rows()
        if not return_dict:
            return (result, drive.fps)
        return DeepVideoPortraitPipelineOutput(frames=result, fps=drive.fps, parameters=drive, stats=stats)
