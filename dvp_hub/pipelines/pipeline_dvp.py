"""`DeepVideoPortraitPipeline`: source video -> face parameters -> conditioning -> target's frames."""

from __future__ import annotations

import copy
import os
import re
import shutil
import tempfile
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput, logging

from ..errors import TargetLoadError
from ..models import PortraitTarget, RenderingToVideoGenerator

logger = logging.get_logger(__name__)

DEMO_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets", "demo_target")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
ALLOWED_CLASSES = {"RenderingToVideoGenerator", "PortraitTarget", "DeepVideoPortraitPipeline"}


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


def resolve_target(name_or_path: str, **hub_kwargs) -> str:
    """``demo``, a local folder or a Hub repo id -> a local pipeline folder (downloaded if needed)."""
    if name_or_path == "demo":
        if not os.path.isfile(os.path.join(DEMO_DIR, "model_index.json")):
            raise TargetLoadError("the bundled demo target is missing from this installation; reinstall dvp-hub.")
        return DEMO_DIR
    if os.path.isdir(name_or_path):
        return name_or_path
    if os.path.exists(name_or_path) or name_or_path.startswith((".", "/", "~")) or ".." in name_or_path:
        raise TargetLoadError(f"{name_or_path}: not a target folder; give `demo`, a pipeline folder or a Hub id.")
    if not _REPO_ID.match(name_or_path):
        raise TargetLoadError(f"{name_or_path}: not a folder and not a valid Hub repo id (owner/name).")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return snapshot_download(
            name_or_path,
            revision=hub_kwargs.get("revision"),
            cache_dir=hub_kwargs.get("cache_dir"),
            local_files_only=hub_kwargs.get("local_files_only", False),
            token=hub_kwargs.get("token"),
            allow_patterns=["*.json", "*.safetensors", "*.md", "reference.mp4"],
        )
    except LocalEntryNotFoundError:
        raise TargetLoadError(
            f"{name_or_path}: not in the local Hugging Face cache and the Hub cannot be reached (offline); "
            "download it once online or give a local folder."
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as err:
        raise TargetLoadError(
            f"{name_or_path}: could not download from the Hub ({str(err).splitlines()[0]})."
        ) from None


def check_folder(folder: str) -> None:
    """Refuse repos with pickled weights or components outside dvp_hub, before anything is loaded."""
    import json

    index = os.path.join(folder, "model_index.json")
    if not os.path.isfile(index):
        raise TargetLoadError(f"{folder}: no model_index.json; not a dvp_hub target folder.")
    for root, _, files in os.walk(folder):
        for f in files:
            if f.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")):
                raise TargetLoadError(f"{folder}: holds pickled weights ({f}); dvp_hub loads safetensors only.")
    try:
        with open(index) as fh:
            spec = json.load(fh)
    except ValueError:
        raise TargetLoadError(f"{index}: not valid JSON.") from None
    if spec.get("_class_name") != "DeepVideoPortraitPipeline":
        raise TargetLoadError(f"{folder}: model_index.json names {spec.get('_class_name')!r}, not a dvp_hub pipeline.")
    for key in ("generator", "target"):
        lib_cls = spec.get(key)
        if not (
            isinstance(lib_cls, list)
            and len(lib_cls) == 2
            and str(lib_cls[0]).startswith("dvp_hub")
            and lib_cls[1] in ALLOWED_CLASSES
        ):
            raise TargetLoadError(f"{folder}: component {key!r} is {lib_cls!r}; only dvp_hub classes are loaded.")
    _check_sizes(folder)


# Upper bounds a config must respect before anything is allocated (a hostile config could ask for terabytes).
_LIMITS = {
    "generator": {
        "in_channels": 64,
        "temporal_window": 64,
        "base_channels": 1024,
        "max_channels": 4096,
        "resolution": 1024,
        "out_channels": 16,
    },
    "target": {"num_frames": 1_000_000, "num_expression": 1024, "resolution": 1024},
}


def _check_sizes(folder: str) -> None:
    import json

    for comp, limits in _LIMITS.items():
        path = os.path.join(folder, comp, "config.json")
        try:
            with open(path) as fh:
                cfg = json.load(fh)
        except (OSError, ValueError):
            raise TargetLoadError(f"{folder}: {comp}/config.json is missing or not valid JSON.") from None
        for key, hi in limits.items():
            v = cfg.get(key)
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 < v <= hi):
                raise TargetLoadError(
                    f"{folder}: {comp} config has {key}={v!r} (allowed: 1 to {hi}); refusing to load."
                )


class DeepVideoPortraitPipeline(DiffusionPipeline):
    r"""Deep Video Portraits: drive a target person with a source actor's head pose, expression and gaze.

    Components:
        generator ([`RenderingToVideoGenerator`]): the target's rendering-to-video network.
        target ([`PortraitTarget`]): the target's face model, crop, camera and training sequence.

    Example:
        ```py
        >>> from dvp_hub import DeepVideoPortraitPipeline, export_to_video
        >>> pipe = DeepVideoPortraitPipeline.from_pretrained("demo")
        >>> out = pipe(source_video="../shared/data/talking-d3.mp4", max_frames=30)
        >>> export_to_video(out.frames[0], "reenacted.mp4", fps=out.fps, audio_from="../shared/data/talking-d3.mp4")
        ```
    """

    model_cpu_offload_seq = "generator"

    def __init__(self, generator: RenderingToVideoGenerator, target: PortraitTarget):
        super().__init__()
        self.register_modules(generator=generator, target=target)
        self.reference_video: str | None = None  # a video of the target (``reference.mp4`` in its folder)

    def _target_state(self) -> dict:
        """What every call derives from the target, made once per target: its training sequence as numpy, its
        most neutral training frame (relative expression starts there), and for editing the control
        directions and a renderer (added by `edit`)."""
        from . import retarget

        state = self.__dict__.get("_target_cache")
        if state is None or state["target"] is not self.target:
            seq = self.target.to_sequence()
            neutral = retarget.neutral_frame(seq, slice(0, self.target.config.train_frames))
            state = {"target": self.target, "sequence": seq, "neutral_frame": neutral}
            self.__dict__["_target_cache"] = state
        return state

    def _background(self) -> np.ndarray:
        """The target's reference frame at full resolution, from its reference video (for paste-back).

        Decoded once per reference video: every call of the pipeline pastes into the same frame.
        """
        cached = self.__dict__.get("_background_cache")
        if cached is None or cached[0] != self.reference_video:
            cached = (self.reference_video, self._decode_background())
            self.__dict__["_background_cache"] = cached
        return cached[1]

    def _decode_background(self) -> np.ndarray:
        from ..errors import InputError
        from ..video import VideoReader

        cam = self.target.camera
        reader = VideoReader(self.reference_video, max_frames=self.target.config.reference_frame + 1)
        if (reader.width, reader.height) != (cam.width, cam.height):
            raise InputError(
                f"{self.reference_video}: {reader.width}x{reader.height}, but the target was fitted on "
                f"{cam.width}x{cam.height} frames; give the target's own video."
            )
        for i, frame in enumerate(reader):
            if i == self.target.config.reference_frame:
                return frame.copy()
        raise InputError(f"{self.reference_video}: shorter than the target's reference frame; give its own video.")

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
            pipe = super().from_pretrained(folder, use_safetensors=True, **kwargs)
        except (OSError, ValueError, RuntimeError, KeyError) as err:
            raise TargetLoadError(
                f"{pretrained_model_name_or_path}: cannot load the target ({str(err).splitlines()[0][:200]})."
            ) from None
        if pipe.target.dtype != torch.float32:
            pipe.target.to(torch.float32)  # face parameters stay in full precision
        pipe.generator.eval()
        ref = os.path.join(folder, "reference.mp4")
        pipe.reference_video = ref if os.path.isfile(ref) else None
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
    ):
        """One edited frame of the target (interactive editing), ``H x W x 3`` uint8.

        Starts from the target's training frame ``frame_index``; yaw / pitch / roll (degrees) rotate the head in
        camera axes; ``expression`` maps the named controls of `pipelines.editing.CONTROLS` ("jaw_open",
        "smile", "brows", "blink") or ``"c<k>"`` (coefficient k) to amounts in standard deviations; ``gaze``
        shifts both irises (x, y) in eye widths. The window repeats the edited frame, so the call is one
        render and one generator pass (tens of milliseconds with the light generator).
        """
        from ..export import mark_synthetic
        from ..models.inference import generate_windows
        from ..render.conditioning import ConditioningRenderer
        from .editing import control_directions, edited_frame

        # Slider calls: the target's sequence, its control directions and a renderer are made once.
        state = self._target_state()
        if "renderer" not in state:
            state["renderer"] = ConditioningRenderer(device=self._execution_device)
        tgt = state["sequence"]
        if not 0 <= frame_index < len(tgt):
            from ..errors import InputError

            raise InputError(f"frame_index={frame_index} is outside the target's {len(tgt)} frames.")
        if expression and "directions" not in state:
            state["directions"] = control_directions(tgt, slice(0, self.target.config.train_frames))
        one = edited_frame(tgt, frame_index, yaw, pitch, roll, expression or {}, gaze, state.get("directions"))
        cond = state["renderer"].render(one, self.target.crop, self.target.config.resolution)
        clip = cond.expand(self.generator.config.temporal_window, -1, -1, -1)  # the window repeats the frame
        img = ((generate_windows(self.generator, clip)[0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        img = img.permute(1, 2, 0).cpu().numpy()
        return mark_synthetic(img) if watermark else img

    @torch.no_grad()
    def __call__(
        self,
        source_video=None,
        source_parameters=None,
        mode="reenact",
        transfer=("pose", "expression", "gaze"),
        neutral_frame=None,
        max_frames=None,
        output_type="np",
        return_dict=True,
        output_video=None,
        watermark=True,
        batch_size=8,
        chunk_size=64,
        progress=True,
        fast=True,
        paste_back=None,
        overlap=None,
    ):
        r"""Drive the target with a source video (or a saved `dvp track` parameter file).

        Args:
            source_video: path of the source (driving) video.
            source_parameters: a `FaceSequence` or the path of a parameter file from ``dvp track``.
            mode: ``"reenact"`` (full head: pose, expression, gaze) or ``"dub"`` (the target's own head motion,
                the source's expression; the output keeps the source's audio).
            transfer: which of ``"pose"``, ``"expression"``, ``"gaze"`` to take from the source (reenact).
            neutral_frame: the source frame taken as neutral; ``None`` picks the most neutral one.
            max_frames: use only the first frames of the source.
            output_type: ``"np"``, ``"pt"`` or ``"pil"``.
            output_video: write the result here (mp4 with the source's audio) instead of returning frames; memory
                then stays constant whatever the source's length.
            watermark: draw the visible "SYNTHETIC" label (on by default; turning it off is explicit).
            batch_size: frames per generator call; chunk_size: frames rendered and generated per chunk.
            paste_back: composite the generated crop into the target's full frame (its reference video's
                reference frame) with a feathered edge; ``None`` does it when the target folder has ``reference.mp4``.
            fast: use the fast inference path (BatchNorm folded, channels_last, bf16 where the hardware has it;
                outputs within a fifth of a grey level of plain fp32). ``False`` runs the plain fp32 module.
            overlap: render the next batches and encode the last ones in threads while the generator runs
                (`streaming`). ``None`` does it on a GPU; on a CPU the stages compete for the same cores and
                it measured slower (2 cores: 10.3-11.2 s against 8.2 s for a 10 s source).

        Returns:
            `DeepVideoPortraitPipelineOutput` (or a tuple ``(frames, fps)`` with ``return_dict=False``).
        """
        import time

        from ..errors import InputError
        from ..export import mark_synthetic
        from ..face.sequence import FaceSequence
        from ..models.inference import generate_windows, input_dtype
        from ..render.conditioning import ConditioningRenderer
        from ..video import VideoWriter
        from . import retarget
        from .streaming import Worker, prefetch

        t_start = time.perf_counter()
        # 1. Check inputs
        if (source_video is None) == (source_parameters is None):
            raise InputError("give exactly one of source_video= or source_parameters=.")
        if mode not in ("reenact", "dub"):
            raise InputError(f"mode must be 'reenact' or 'dub', got {mode!r}.")
        if output_type not in ("np", "pt", "pil"):
            raise InputError(f"output_type must be 'np', 'pt' or 'pil', got {output_type!r}.")
        transfer = tuple(transfer)
        if not transfer or set(transfer) - set(retarget.TRANSFERABLE):
            raise InputError(f"transfer must be a non-empty subset of {retarget.TRANSFERABLE}, got {transfer}.")
        steps = "[1/4] tracking source" if source_video is not None else "[1/4] loading parameters"
        # 2. Track the source
        if source_video is not None:
            from ..face.fitting import fit_sequence
            from ..face.tracker import FaceTracker
            from ..video import VideoReader

            reader = VideoReader(source_video, max_frames=max_frames)
            bar = self.progress_bar(total=len(reader)) if progress else None
            if bar is not None:
                bar.set_description(steps)

            def tick(done, total):
                if bar is not None:
                    bar.update(done - bar.n)

            try:
                with FaceTracker() as tracker:
                    track = tracker.track(
                        reader, fps=reader.fps, num_frames=len(reader), name=str(source_video), progress=tick
                    )
            finally:  # before any error message, so that it gets a line of its own
                if bar is not None:
                    bar.close()
            source = fit_sequence(track)
            del track  # landmarks and colours of every frame: not needed any more
        else:
            source = (
                source_parameters
                if isinstance(source_parameters, FaceSequence)
                else FaceSequence.load(source_parameters)
            )
            if max_frames:
                source = source.slice(0, max_frames)
        if neutral_frame is not None and not 0 <= int(neutral_frame) < len(source):
            raise InputError(f"neutral_frame={neutral_frame} is outside the source's {len(source)} frames.")
        if paste_back is None:
            paste_back = self.reference_video is not None
        if paste_back and self.reference_video is None:
            raise InputError("paste_back needs a reference video of the target (reference.mp4 in its folder).")
        background = self._background() if paste_back else None
        # 3. Transfer the motion onto the target
        state = self._target_state()
        tgt, tneu = state["sequence"], state["neutral_frame"]
        cfg = self.target.config
        if mode == "reenact":
            drive = retarget.reenact(source, tgt, cfg.reference_frame, neutral_frame, tneu, transfer)
        else:
            drive = retarget.dub(source, tgt, cfg.train_frames, neutral_frame, tneu)
        pose_report = retarget.pose_range(drive, tgt, cfg.reference_frame, cfg.train_frames)
        if pose_report["frames_beyond_target_pose_range"]:
            logger.warning(
                f"{pose_report['frames_beyond_target_pose_range']} of {len(drive)} frames turn the head up to "
                f"{pose_report['max_pose_offset_deg']:g} degrees from the target's reference pose; its training "
                f"frames reached {pose_report['target_pose_range_deg']:g}. Those frames are extrapolated and look "
                "worse: use a source with smaller head turns, or transfer=('expression', 'gaze')."
            )
        # 4. Render and generate, chunk by chunk
        device = self._execution_device
        gen = self.generator
        window = gen.config.temporal_window
        in_dtype = input_dtype(gen, fast)
        size = cfg.resolution
        renderer = ConditioningRenderer(device=device)
        crop = self.target.crop
        n = len(drive)
        writer = VideoWriter(output_video, drive.fps, audio_from=source_video) if output_video else None
        frames: list = []
        gen_seconds = 0.0
        bar = self.progress_bar(total=n) if progress else None
        if bar is not None:
            bar.set_description("[2/4] rendering + [3/4] generating")

        if overlap is None:
            overlap = device.type == "cuda"
        # Without overlap, the chunk of renders lives in one buffer allocated once, so that a long video
        # neither grows nor fragments the heap; with overlap each chunk gets its own (threads hold them).
        hist = window - 1
        chunk_buf = None
        if not overlap:
            chunk_buf = torch.empty(hist + chunk_size, size, size, 9, dtype=in_dtype, device=device)

        def clips():  # conditioning clips, each batch's frames plus their history (a thread ahead with overlap)
            tail = None  # the previous chunk's last `hist` renders
            for s in range(0, n, chunk_size):
                e = min(n, s + chunk_size)
                if chunk_buf is None:
                    cond = torch.empty(hist + e - s, size, size, 9, dtype=in_dtype, device=device)
                else:
                    cond = chunk_buf[: hist + e - s]
                cond = cond.permute(0, 3, 1, 2)  # [hist + e - s, 9, R, R] in channels_last memory
                renderer.render(
                    drive, crop, size, frames=slice(s, e), batch_size=16, albedo=tgt.albedo, out=cond[hist:]
                )
                if tail is None:
                    cond[:hist] = cond[hist : hist + 1]  # before the first frame: the first frame, as in training
                else:
                    cond[:hist] = tail
                tail = cond[len(cond) - hist :].clone()  # a copy: the buffer is overwritten next
                for b in range(0, e - s, batch_size):
                    yield cond[b : b + hist + min(batch_size, e - s - b)]

        def finish(out: torch.Tensor) -> None:  # [4/4] in a thread, behind the generator
            imgs = ((out + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            for img in imgs:
                if background is not None:
                    img = crop.paste(background, img)
                img = mark_synthetic(img) if watermark else img
                if writer is not None:
                    writer.write(img)
                else:
                    frames.append(img)
            if bar is not None:
                bar.update(len(imgs))

        sink = Worker(finish) if overlap else None
        try:
            for clip in prefetch(clips()) if overlap else clips():
                t0 = time.perf_counter()
                out = generate_windows(gen, clip, fast=fast)
                gen_seconds += time.perf_counter() - t0
                sink.put(out) if sink is not None else finish(out)
            if sink is not None:
                sink.close()
        except BaseException:
            try:
                if sink is not None:
                    sink.close()
            except BaseException:  # noqa: BLE001 - the first error is the one to report
                pass
            if writer is not None:
                writer.abort()
            raise
        finally:
            if bar is not None:
                bar.close()
        # 5. Output
        if writer is not None:
            writer.close()
            result = None
        else:
            arr = np.stack(frames)
            if output_type == "np":
                result = (arr.astype(np.float32) / 255.0)[None]
            elif output_type == "pt":
                result = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(255)[None]
            else:
                from PIL import Image

                result = [[Image.fromarray(a) for a in arr]]
        total = time.perf_counter() - t_start
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
        try:
            super().save_pretrained(tmp, safe_serialization=True)
            # The fp16 copy is cast from a copy: casting in place and back would round the fp32 weights.
            half = torch.nn.Module.half(copy.deepcopy(self.generator))  # Module.half: no ModelMixin.to warning
            half.save_pretrained(os.path.join(tmp, "generator"), variant="fp16", safe_serialization=True)
            self.target.save_pretrained(os.path.join(tmp, "target"), variant="fp16", safe_serialization=True)
            ref = getattr(self, "reference_video", None)
            if ref and os.path.isfile(ref):
                shutil.copy(ref, os.path.join(tmp, "reference.mp4"))
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
