"""`DeepVideoPortraitPipeline`: source video -> face parameters -> conditioning -> target's frames."""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput, logging

from ..errors import InputError, TargetLoadError
from ..models import FaceRefiner, PortraitTarget, RenderingToVideoGenerator
from ..video import current_umask
from .finish import FrameFinisher
from .reference import load_background
from .target_folder import DEMO_DIR, check_folder, reference_file, resolve_target  # noqa: F401 - public names

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


class DeepVideoPortraitPipeline(DiffusionPipeline):
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
    _optional_components = ["refiner"]

    def __init__(self, generator: RenderingToVideoGenerator, target: PortraitTarget, refiner: FaceRefiner = None):
        super().__init__()
        self.register_modules(generator=generator, target=target, refiner=refiner)
        self.reference: str | None = None  # the target's full frame (`target_folder.REFERENCE_FILES`)

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

    def _target_state(self) -> dict:
        """What every call derives from the target, made once per target: its training sequence as numpy, its
        most neutral training frame and that frame's expression with closed lips (relative expression starts
        there), its trained head poses (`PoseLimits`) and expressions (`ExpressionLimits`), and for editing the
        control directions and a renderer (added by `edit`)."""
        from . import retarget
        from .expression_limits import ExpressionLimits
        from .pose_limits import PoseLimits

        state = self.__dict__.get("_target_cache")
        if state is None or state["target"] is not self.target:
            seq = self.target.to_sequence()
            neutral = retarget.neutral_frame(seq, slice(0, self.target.config.train_frames))
            state = {
                "target": self.target,
                "sequence": seq,
                "neutral_frame": neutral,
                "neutral_expression": retarget.closed_neutral(seq, neutral),
                "pose_limits": PoseLimits.from_target(
                    seq, self.target.config.train_frames, self.target.config.reference_frame
                ),
                "expression_limits": ExpressionLimits.from_target(seq, self.target.config.train_frames),
            }
            self.__dict__["_target_cache"] = state
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
            frame = load_background(self.reference, cam.width, cam.height, self.target.config.reference_frame)
            cached = self.__dict__["_background_cache"] = (self.reference, frame)
        return cached[1]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str, **kwargs) -> "DeepVideoPortraitPipeline":
        """Load from ``demo``, a local folder, or a Hub repo id (downloaded with ``snapshot_download``).

        Accepts ``dtype``, ``variant`` ("fp16"), ``revision``, ``cache_dir``, ``local_files_only``, ``token``.
        """
        hub = {k: kwargs.pop(k) for k in ("revision", "cache_dir", "local_files_only", "token") if k in kwargs}
        folder = resolve_target(str(pretrained_model_name_or_path), **hub)
        check_folder(folder)
        if "torch_dtype" in kwargs:
            kwargs["dtype"] = kwargs.pop("torch_dtype")
        variant = kwargs.get("variant")
        gen_dir = os.path.join(folder, "generator")
        if (
            variant is None
            and not os.path.isfile(os.path.join(gen_dir, "diffusion_pytorch_model.safetensors"))
            and os.path.isfile(os.path.join(gen_dir, "diffusion_pytorch_model.fp16.safetensors"))
        ):
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
        if pipe.refiner is not None:
            pipe.refiner.eval()
        pipe.reference = reference_file(folder)
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
        camera axes; ``expression`` maps the named controls of `pipelines.editing.CONTROLS` ("jaw_open",
        "smile", "brows", "blink") or ``"c<k>"`` (coefficient k) to amounts in standard deviations; ``gaze``
        shifts both irises (x, y) in eye widths. The window repeats the edited frame, so the call is one
        render and one generator pass. ``paste_back``: the target's full frame (default where it has one).
        """
        from ..models.inference import generate_windows
        from ..render.conditioning import ConditioningRenderer
        from .editing import control_directions, edited_frame

        # Slider calls: the target's sequence, its control directions, a renderer and the finisher are made once.
        state = self._target_state()
        if "renderer" not in state:
            state["renderer"] = ConditioningRenderer(device=self._execution_device)
        tgt = state["sequence"]
        if not 0 <= frame_index < len(tgt):
            raise InputError(f"frame_index={frame_index} is outside the target's {len(tgt)} frames.")
        if expression and "directions" not in state:
            state["directions"] = control_directions(tgt, slice(0, self.target.config.train_frames))
        paste_back = self.has_reference if paste_back is None else paste_back
        key = ("finisher", paste_back, watermark)
        if key not in state:
            state[key] = FrameFinisher(self, paste_back, watermark=watermark, invisible_watermark=watermark)
        one = edited_frame(tgt, frame_index, yaw, pitch, roll, expression or {}, gaze, state.get("directions"))
        cond = state["renderer"].render(one, self.target.crop, self.target.config.resolution)
        clip = cond.expand(self.generator.config.temporal_window, -1, -1, -1)  # the window repeats the frame
        finisher = state[key]
        finisher.reset()  # a still: no smoothing with the previous slider position
        return finisher(generate_windows(self.generator, clip))[0]

    def live(
        self,
        fps: float = 30.0,
        mode: str = "reenact",
        transfer=("pose", "expression", "gaze"),
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
        """A live session (`pipelines.live.LiveSession`): ``session.push(frame)`` returns the target's frame for
        one camera frame, causally (calibration on the first ``calibration_seconds``, `recalibrate()` to
        redo it); ``session.stream(frames)`` is the generator form; ``session.parameters()`` the motion.
        ``mode="dub"`` keeps the target's own head motion and moves only its face (as offline). ``compile``:
        the generator compiled by inductor when the session starts (seconds, once per process; falls back to
        eager where no C++ compiler is found, or with ``DVP_COMPILE=0``). ``int8``: on a CPU with PyTorch's x86
        quantized engine, the generator quantized to int8 instead (calibrated on the target's own frames when the
        session starts, once per process; `models.int8`; ``DVP_INT8=0`` also turns it off); where int8 is
        unavailable the compiled float generator runs. ``limit_pose``, ``limit_expression``: as in
        ``__call__``. ``paste_back``: the target's full frame (default where it has one), as offline.
        ``refine``: the target's refiner too (off by default: on two CPU cores it does not fit a camera frame's
        time)."""
        from .live import LiveSession

        return LiveSession(
            self,
            fps,
            mode,
            transfer,
            calibration_seconds,
            watermark,
            invisible_watermark=invisible_watermark,
            fast=fast,
            compile=compile,
            limit_pose=limit_pose,
            limit_expression=limit_expression,
            int8=int8,
            paste_back=paste_back,
            refine=refine,
        )

    @torch.no_grad()
    def __call__(
        self,
        source_video=None,
        source_parameters=None,
        mode="reenact",
        transfer=("pose", "expression", "gaze"),
        neutral_frame=None,
        limit_pose=True,
        limit_expression=True,
        max_frames=None,
        output_type="np",
        return_dict=True,
        refine=True,
        output_video=None,
        watermark=True,
        batch_size=8,
        chunk_size=64,
        progress=True,
        fast=True,
        paste_back=None,
        overlap=None,
        invisible_watermark=True,
    ):
        r"""Drive the target with a source video (or a saved `dvp track` parameter file).

        Args:
            source_video: path of the source (driving) video.
            source_parameters: a `FaceSequence` or the path of a parameter file from ``dvp track``.
            mode: ``"reenact"`` (full head: pose, expression, gaze) or ``"dub"`` (the target's own head motion,
                the source's expression; the output keeps the source's audio).
            transfer: which of ``"pose"``, ``"expression"``, ``"gaze"`` to take from the source (reenact).
            neutral_frame: the source frame whose expression and gaze are taken as neutral; ``None`` picks the most
                neutral one. (The head pose is measured from the source's median pose.)
            limit_pose: hold the driven head near the target's trained poses (rotation, image position and size;
                `pose_limits`, reenact mode). A generator paints a doubled or shattered head where its target's
                head never was; ``False`` extrapolates.
            limit_expression: hold the driven face near the target's trained expressions outside the mouth and eyes
                (`expression_limits`, reenact mode): a frown or squint the target never made is made smaller, the
                mouth and eyes still follow the source; a generator tears the collar on faces it never saw (the
                demo driven by talking-d3: 85 torn frames of 300 with it, 144 without). ``False`` passes the
                expression on whole. Dubbing never limits it.
            max_frames: use only the first frames of the source.
            output_type: ``"np"``, ``"pt"`` or ``"pil"``.
            output_video: write the result here (mp4 with the source's audio) instead of returning frames; memory
                then stays constant whatever the source's length.
            watermark: draw the visible "SYNTHETIC" label (on by default; turning it off is explicit).
            invisible_watermark: embed the invisible watermark (`provenance.watermark`) in every frame (on by
                default; it survives crops, resizes, re-encoding and grey conversion, the label does not).
            batch_size: frames per generator call; chunk_size: frames rendered and generated per chunk.
            paste_back: composite the generated person into the target's full frame at its native size (its
                reference frame; `render.composite`); ``None`` does it when the target has one. ``False``: the crop.
            refine: run the target's `FaceRefiner` (when it has one): the crop at twice the generator's size.
            fast: use the fast inference path (BatchNorm folded, channels_last, bf16 where it runs faster than fp32;
                outputs within a fifth of a grey level of plain fp32). ``False`` runs the plain fp32 module.
            overlap: render the next batches and encode the last ones in threads while the generator runs
                (`streaming`). ``None`` does it on a GPU; on a CPU the stages compete for the same cores and
                it measured slower (2 cores: 10.3-11.2 s against 8.2 s for a 10 s source).

        Returns:
            `DeepVideoPortraitPipelineOutput` (or a tuple ``(frames, fps)`` with ``return_dict=False``).
        """
        import time

        from ..video import VideoWriter
        from . import steps

        t_start = time.perf_counter()
        # 1. Check the arguments and the source (probed, not decoded): a bad file fails here, at once
        transfer, reader = steps.check_inputs(
            source_video, source_parameters, mode, output_type, transfer, output_video, max_frames
        )
        if paste_back is None:
            paste_back = self.has_reference
        if paste_back and not self.has_reference:
            raise InputError("paste_back needs the target's full frame (reference.png in its folder); ask for the crop.")
        stages = 2 if reader is not None else 1
        show = progress and not getattr(self, "_progress_bar_config", {}).get("disable", False)
        # 2. Track the source and fit the face model (or load a `dvp track` parameter file)
        if reader is not None:
            bar = steps.stage_bar(self, f"[1/{stages}] tracking the source", len(reader)) if show else None
            try:
                source = steps.track_source(reader, bar)
            finally:  # before any error message, so that it gets a line of its own
                bar.close() if bar is not None else None
        else:
            source = steps.load_parameters(source_parameters, max_frames)
        # 3. Retarget: the source's motion on the target's face
        drive, pose_report = steps.retarget_motion(
            self, source, mode, transfer, neutral_frame, limit_pose, limit_expression
        )
        # 4. Render the conditioning, generate, mark and write, chunk by chunk
        finisher = FrameFinisher(self, paste_back, refine, watermark, invisible_watermark)
        writer = None
        if output_video:
            provenance = self.provenance(mode=mode, source=source_video or source_parameters)
            writer = VideoWriter(output_video, drive.fps, audio_from=source_video, provenance=provenance)
        frames: list = []
        sink = steps.frame_sink(finisher, writer, frames)
        bar = steps.stage_bar(self, f"[{stages}/{stages}] generating the target", len(drive)) if show else None
        try:
            gen_seconds = steps.render_generate_write(
                self, drive, sink, batch_size=batch_size, chunk_size=chunk_size, fast=fast, overlap=overlap, bar=bar
            )
            if writer is not None:
                writer.close()
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        finally:
            bar.close() if bar is not None else None
        # 5. Output
        result = None if writer is not None else steps.collect_frames(frames, output_type)
        total = time.perf_counter() - t_start
        n = len(drive)
        stats = {
            "frames": n,
            "seconds": round(total, 3),
            "fps": round(n / max(total, 1e-9), 2),
            "generator_seconds": round(gen_seconds, 3),
            "source_reference_frame": drive.info.get("source_reference_frame"),
            "interpolated_frames": int(source.info.get("interpolated_frames", 0)),
            **pose_report,
        }
        if not return_dict:
            return (result, drive.fps)
        return DeepVideoPortraitPipelineOutput(frames=result, fps=drive.fps, parameters=drive, stats=stats)

    def save_pretrained(self, save_directory: str, model_card=None, **kwargs) -> None:
        """Write fp32 and fp16 weights (``variant="fp16"``) and the model card, atomically."""
        save_directory = str(save_directory).rstrip("/")
        parent = os.path.dirname(os.path.abspath(save_directory))
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700; the folder becomes the user's target
        try:
            super().save_pretrained(tmp, safe_serialization=True)
            # The fp16 copy is cast from a copy: casting in place and back would round the fp32 weights.
            half = torch.nn.Module.half(copy.deepcopy(self.generator))  # Module.half: no ModelMixin.to warning
            half.save_pretrained(os.path.join(tmp, "generator"), variant="fp16", safe_serialization=True)
            self.target.save_pretrained(os.path.join(tmp, "target"), variant="fp16", safe_serialization=True)
            ref = getattr(self, "reference", None)
            if ref and os.path.isfile(ref):
                shutil.copy(ref, os.path.join(tmp, "reference" + os.path.splitext(ref)[1].lower()))
            if model_card is not None:
                model_card.save(os.path.join(tmp, "README.md"))
            elif os.path.isfile(os.path.join(save_directory, "README.md")):
                shutil.copy(os.path.join(save_directory, "README.md"), os.path.join(tmp, "README.md"))
            if os.path.exists(save_directory):
                old = tempfile.mkdtemp(prefix=".old-", dir=parent)
                os.replace(save_directory, os.path.join(old, "x"))
                os.replace(tmp, save_directory)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, save_directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str = "Upload Deep Video Portraits target",
        private=None,
        token=None,
        model_card=None,
        **kwargs,
    ) -> str:
        """Save both weight sets and the card to a temporary folder, then ``upload_folder`` it."""
        from huggingface_hub import create_repo, upload_folder

        with tempfile.TemporaryDirectory() as tmp:
            folder = os.path.join(tmp, "pipe")
            self.save_pretrained(folder, model_card=model_card)
            create_repo(repo_id, private=private, token=token, exist_ok=True)
            upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message, token=token)
        return repo_id
