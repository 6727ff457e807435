"""One validated set of run options behind the pipeline's keyword arguments (LivePortrait's ``InferenceConfig``
pattern): `DeepVideoPortraitPipeline.__call__`, `live()`, the CLI and the Space all build a `RunOptions`, so
every entry point refuses the same bad values with the same one-line message."""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..errors import InputError
from ..motion.retarget import TRANSFERABLE

MODES = ("reenact", "dub")
OUTPUT_TYPES = ("np", "pt", "pil")


@dataclass(frozen=True)
class RunOptions:
    """How a run drives the target and what it returns.

    mode: ``"reenact"`` (head pose, expression, gaze) or ``"dub"`` (the target's own head motion, the source's face).
    transfer: which of pose / expression / gaze reenact mode takes from the source.
    neutral_frame: the source frame taken as neutral (None: the most neutral one).
    limit_pose, limit_expression: hold the driven head / face near the target's trained ones (reenact mode).
    max_frames: the first frames of the source only.
    output_type: ``"np"``, ``"pt"`` or ``"pil"``.
    watermark, invisible_watermark: the visible label and the invisible watermark (both on by default).
    paste_back: the target's full frame at its native size (None: where the target has one); False: the crop.
    reference_torso: pasted back, keep the reference frame's neck, collar and shoulders below the rendered jaw (a
        generator driven by a mouth its target never made tears the collar); False: the generated torso (for a
        target whose shoulders move a lot).
    refine: the target's refiner and detail bank, where it has them.
    fast: the fast inference path (BatchNorm folded, channels_last, bf16 where faster); False: plain fp32.
    int8: the generator and the refiner's detail branch in int8 on a CPU with PyTorch's x86 quantized engine, with
        ``fast`` on: True wherever that engine works (calibrated once per process and target); None (the default)
        the same for runs long enough to pay for calibrating (`live_generator.INT8_MIN_FRAMES`), float for shorter
        ones; False: float.
    batch_size, chunk_size: frames per generator call and per rendered chunk.
    overlap: render, generate, refine and paste back / mark / encode in four threads side by side (None: on;
        False: in turn, the least memory).
    progress: show the stages' progress bars.
    profile: time every stage (`profile.StageTimes`); the table is in the result's ``stats["profile"]``.
    """

    mode: str = "reenact"
    transfer: tuple = TRANSFERABLE
    neutral_frame: int | None = None
    limit_pose: bool = True
    limit_expression: bool = True
    max_frames: int | None = None
    output_type: str = "np"
    watermark: bool = True
    invisible_watermark: bool = True
    paste_back: bool | None = None
    reference_torso: bool = True
    refine: bool = True
    fast: bool = True
    int8: bool | None = None
    batch_size: int = 8
    chunk_size: int = 64
    overlap: bool | None = None
    progress: bool = True
    profile: bool = False

    def __post_init__(self):
        object.__setattr__(self, "transfer", tuple(self.transfer))
        if self.mode not in MODES:
            raise InputError(f"mode must be 'reenact' or 'dub', got {self.mode!r}.")
        if self.output_type not in OUTPUT_TYPES:
            raise InputError(f"output_type must be 'np', 'pt' or 'pil', got {self.output_type!r}.")
        if not self.transfer or set(self.transfer) - set(TRANSFERABLE):
            raise InputError(f"transfer must be a non-empty subset of {TRANSFERABLE}, got {self.transfer}.")
        if self.max_frames is not None and int(self.max_frames) < 1:
            raise InputError(f"max_frames must be at least 1, got {self.max_frames}.")
        if self.neutral_frame is not None and int(self.neutral_frame) < 0:
            raise InputError(f"neutral_frame must be a frame index, got {self.neutral_frame}.")
        if self.int8 is not None:
            object.__setattr__(self, "int8", bool(self.int8))
        for name in ("batch_size", "chunk_size"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}.")

    @classmethod
    def resolve(cls, options: "RunOptions | None", kwargs: dict, **defaults) -> "RunOptions":
        """``options``, or options from keyword arguments over ``defaults``; both at once is refused (one of them
        would be ignored)."""
        if options is not None:
            if kwargs:
                raise InputError(f"give options= or keyword options, not both (got {', '.join(sorted(kwargs))} too).")
            return options
        return cls.from_kwargs(**{**defaults, **kwargs})

    @classmethod
    def from_kwargs(cls, **kwargs) -> "RunOptions":
        """Options from keyword arguments; an unknown name is refused with the list of known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise InputError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
        return cls(**kwargs)
