"""The end of the frame engine, shared by the offline pipeline, `edit` and the live session.

Generator output ``[B, 3, R, R]`` in [-1, 1] -> the frames a user gets (``H x W x 3`` uint8):

1. refined: the target's `FaceRefiner`, when it has one, takes the crop to twice its size (without one, a
   `DetailBank` enlarges it to the bank's size), and its `DetailBank`, when it has one, gives the face the fine
   detail of its own real frames (`detail_bank.DetailTransfer`);
2. pasted back: composited into the target's full reference frame at its native size
   (`render.composite.Compositor`), unless the crop alone was asked for;
3. marked: the visible "SYNTHETIC" label, then the invisible watermark over the whole frame.

Every path that makes frames for a user goes through `FrameFinisher`, so every output is marked the same way.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import torch

from ..detail_bank import DetailTransfer, region_weight
from ..models.inference import bf16_supported
from ..models.refiner import window_bounds, window_weight
from ..profile import timed
from ..provenance.label import label_box, mark_synthetic
from ..provenance.watermark import embed
from ..render.composite import CLIP_SEGMENT_EVERY, Compositor, Torso
from ..render.conditioning import CORRESPONDENCE, ConditioningRenderer
from ..render.regions import feature_mask
from .live_generator import int8_refiner


def face_window(pipe, margin: int = 16) -> tuple[int, int, int, int]:
    """Where the refiner runs in the generator's crop: the box that holds the target's face (landmarks, hair line
    included by ``margin``) in 90% of its training frames, widened by ``margin`` px, in multiples of 8. Driven heads
    stay near the trained poses (`pose_limits`), so their faces fall inside it; the rest of the crop is enlarged
    bilinearly (the refiner costs in proportion to its area)."""
    cfg, crop = pipe.target.config, pipe.target.crop
    res = int(cfg.resolution)
    lm = pipe.target_state.sequence.landmarks[: cfg.train_frames]  # [T, 478, 2] video px
    xy = (lm - np.array([crop.x0, crop.y0])) * (res / crop.size)
    lo = np.percentile(xy.min(1), 5, axis=0) - 1.5 * margin  # more room above and beside: hair, ears
    hi = np.percentile(xy.max(1), 95, axis=0) + margin
    x0, y0 = (int(max(0, np.floor(v / 8) * 8)) for v in lo)
    x1, y1 = (int(min(res, np.ceil(v / 8) * 8)) for v in hi)
    return (x0, y0, x1, y1)


JAW_FLOOR = 0.1  # `jaw_line` stays within this share of the face's height above the chin


def rendered_face(cond: torch.Tensor | None) -> np.ndarray | None:
    """``[R, R]`` bool: where one frame's conditioning ``[9, R, R]`` renders the face (its correspondence image)."""
    return None if cond is None else (cond[CORRESPONDENCE].amax(0) > -1).cpu().numpy()  # one pass, not two


def jaw_line(face: np.ndarray | None, size: int) -> np.ndarray | None:
    """``[size]``: for each column of a ``size`` px crop, the row just under a `rendered_face` ``[R, R]`` (its
    lowest face pixel in that column, plus one), but never higher than `JAW_FLOOR` of the face's height above the
    chin (beside the face and under its sides: the ears and the jaw's corners stay above the line), in the crop's
    pixels; None without a face."""
    if face is None or not face.any():
        return None
    r, cols, rows = face.shape[0], np.nonzero(face.any(0))[0], np.nonzero(face.any(1))[0]
    chin = rows.max() + 1.0
    lowest = np.interp(np.arange(r), cols, r - np.argmax(face[::-1, cols], axis=0))
    lowest = np.maximum(lowest, chin - JAW_FLOOR * (chin - rows.min()))
    scale = size / r
    return np.interp((np.arange(size) + 0.5) / scale - 0.5, np.arange(r), lowest).astype(np.float32) * scale


def reference_jaw(pipe, size: int) -> np.ndarray | None:
    """`jaw_line` of the target's reference frame (its own fitted face, rendered once): where a generated jaw is
    higher, paste-back stretches the reference's neck up to it (`torso_line`), so that the reference's own jaw never
    shows under the generated one."""
    ref = int(pipe.target.config.reference_frame)
    seq, res = pipe.target_state.sequence, int(pipe.target.config.resolution)  # made once per target
    cond = ConditioningRenderer().render(seq, pipe.target.crop, res, frames=slice(ref, ref + 1))[0]
    return jaw_line(rendered_face(cond), size)


LIFT_TAPER = 1 / 16  # of the crop's side: beside the face, the neck's lift falls to 0 over this much


def torso_line(face: np.ndarray | None, size: int, reference: np.ndarray | None) -> Torso | None:
    """Where paste-back keeps the reference frame's torso in one frame (`render.composite.Torso`). Under the face,
    below the `jaw_line` of its `rendered_face`, the reference's neck lifted by as much as that jaw is above the
    reference frame's own (``reference``, `reference_jaw`); the lift tapers to 0 over `LIFT_TAPER` of the crop beside
    the face, and there the cut moves down by what is not lifted (far beside the face: to the lower of the two jaws),
    so the reference's own chin stays above the cut, under the generated face. None: the generated torso (no
    conditioning, or no face rendered)."""
    jaw = jaw_line(face, size)
    if jaw is None or reference is None:
        return None if jaw is None else Torso(jaw)
    scale = size / face.shape[0]
    cols = np.nonzero(face.any(0))[0]
    left, right = cols.min() * scale, (cols.max() + 1) * scale
    x = np.arange(size, dtype=np.float32) + 0.5
    outside = np.maximum(left - x, x - right)  # > 0 beside the face
    gap = np.maximum(reference - jaw, 0)  # how far the generated jaw is above the reference's
    lift = gap * np.clip(1 - outside / (LIFT_TAPER * size), 0, 1)
    # the cut: where the reference's jaw is shown once lifted (`Compositor` pulls the cut's row up by the lift)
    return Torso((jaw + gap - lift).astype(np.float32), lift.astype(np.float32))


def tensor_to_uint8(x: torch.Tensor) -> np.ndarray:
    """``[B, 3, H, W]`` (or ``[3, H, W]``) in [-1, 1] -> ``[B, H, W, 3]`` (``[H, W, 3]``) uint8."""
    # channels last first, in the input's dtype (a strided read of bf16 conditioning costs three times a copy), then
    # in place: a quarter of the time of four temporaries
    img = x.movedim(-3, -1).contiguous().float()
    img = img.add(1) if img.data_ptr() == x.data_ptr() else img.add_(1)  # never in place on the caller's tensor
    return img.mul_(127.5).round_().clamp_(0, 255).to(torch.uint8).cpu().numpy()


def _enlarged(images: np.ndarray, s: int) -> np.ndarray:
    """``[B, H, W, 3]`` images (uint8 or float32) enlarged ``s`` times by OpenCV's bilinear resize, in their dtype."""
    return np.stack([cv2.resize(im, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR) for im in images])


def refined_uint8(refiner, x: torch.Tensor, window, bf16=False, correspondence=None, residual=None) -> np.ndarray:
    """``refiner.refine(x, window, ...)`` as `tensor_to_uint8` gives it (within a grey level): ``[B, sR, sR, 3]``
    uint8 on the CPU, whatever ``x``'s device, for a ``window`` (None: the whole crop). The
    enlargement is made by OpenCV, in uint8 outside the window (a tenth of the time of one in float) and in float
    under it, where the network's detail (`FaceRefiner.window_detail`, faded in by `window_weight`) is added."""
    s, (x0, y0, x1, y1) = refiner.config.scale, window_bounds(x, window)
    big = _enlarged(tensor_to_uint8(x), s)
    detail = refiner.window_detail(x, window, bf16, correspondence, residual).cpu()
    rows, cols = slice(s * y0, s * y1), slice(s * x0, s * x1)
    # the float enlargement under the window, as `refine`'s: from the window and a pixel around it (its edge samples
    # half a pixel outside), in grey levels, unrounded
    ya, xa, yb, xb = max(0, y0 - 1), max(0, x0 - 1), min(x.shape[-2], y1 + 1), min(x.shape[-1], x1 + 1)
    part = x[:, :, ya:yb, xa:xb].float().add(1).mul_(127.5).permute(0, 2, 3, 1).contiguous().cpu().numpy()
    base = _enlarged(part, s)
    base = base[:, s * (y0 - ya) : s * (y1 - ya), s * (x0 - xa) : s * (x1 - xa)]
    base = torch.from_numpy(np.ascontiguousarray(base)).permute(0, 3, 1, 2)
    # as `refine`: the refined window clamped to the range, faded into the enlargement at its edge
    detail.mul_(127.5).add_(base).clamp_(0, 255).sub_(base)
    if window is not None:
        detail.mul_(window_weight(detail))
    big[:, rows, cols] = base.add_(detail).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return big


class FrameFinisher:
    """Refine, paste back and mark generator outputs for one run (one clip, one live session or one slider).

    Args:
        pipe: the `DeepVideoPortraitPipeline` (its ``refiner`` may be None).
        paste_back: composite into the target's reference frame (needs one: ``pipe.has_reference``).
        refine: run the target's refiner when it has one, and its detail bank when it has one made for the refined
            crop's size (without a refiner: for the generator's crop enlarged to the bank's size).
        watermark, invisible_watermark: the two marks (on by default everywhere).
        fast: the refiner in bf16 where that is faster on this machine (False: fp32).
        reference_torso: pasted back, the reference frame's torso below each frame's rendered jaw (`Compositor`).
        segment_every: pasted back, the person is segmented every this many frames (`Compositor`'s ``every``; 1 for
            frames that are not consecutive, as edited stills).

    ``output_size``: ``(width, height)`` of the frames it returns.
    """

    def __init__(
        self,
        pipe,
        paste_back: bool,
        refine: bool = True,
        watermark=True,
        invisible_watermark=True,
        fast: bool = True,
        reference_torso: bool = True,
        segment_every: int = CLIP_SEGMENT_EVERY,
    ):
        self.refiner = pipe.refiner if refine else None
        self.watermark, self.invisible_watermark = watermark, invisible_watermark
        res = int(pipe.target.config.resolution)
        bank = getattr(pipe, "detail_bank", None) if refine else None
        if self.refiner is not None:
            self.scale = int(self.refiner.config.scale)
        else:  # no refiner: a detail bank still takes the crop to its size (an enlargement, then the detail)
            self.scale = bank.size // res if bank is not None and bank.size % res == 0 else 1
        self.crop_size = res * self.scale
        self.window = face_window(pipe) if self.refiner is not None else None
        if bank is not None and bank.size != self.crop_size:
            warnings.warn(
                f"the target's detail bank is for {bank.size} px crops, not {self.crop_size}: not used; make it again"
            )
            bank = None
        self.details = DetailTransfer(bank) if bank is not None else None
        self.bf16 = fast and self.refiner is not None and bf16_supported(pipe._execution_device)
        self.compositor = None
        if paste_back:
            self.compositor = Compositor(pipe.background(), pipe.target.crop, self.crop_size, every=segment_every)
        self.reference_torso = bool(paste_back and reference_torso)
        self.reference_jaw = reference_jaw(pipe, self.crop_size) if self.reference_torso else None
        self.times = None  # a `profile.StageTimes` to time refine, paste-back and marks into, when profiling
        self.residual = None  # the refiner's detail branch in int8 (`use_int8`)
        self._marked_background = None  # the reference frame with both marks (`mark`), made on first use; False: none

    def use_int8(self, pipe, generator8) -> bool:
        """Run the refiner's detail branch in int8 (`live_generator.int8_refiner`, calibrated on what the int8
        generator ``generator8`` makes); False where it stays float (no refiner, a neural texture, no int8)."""
        if self.refiner is not None:
            self.residual = int8_refiner(pipe, self.refiner, self.window, generator8)
        return self.residual is not None

    @property
    def output_size(self) -> tuple[int, int]:
        if self.compositor is None:
            return (self.crop_size, self.crop_size)
        h, w = self.compositor.background.shape[:2]
        return (w, h)

    @torch.no_grad()
    def crops(self, out: torch.Tensor, cond: torch.Tensor | None = None) -> np.ndarray:
        """Generator output -> refined crops ``[B, S, S, 3]`` uint8 (no paste-back, no marks). ``cond``: the same
        frames' conditioning ``[B, 9, R, R]``, which a refiner with a neural texture reads (ValueError without) and
        the detail bank's transfer keeps to the rendered face outside its mouth and eyes (without it: to the face
        window, by agreement alone)."""
        if self.refiner is not None:
            corr = None
            if self.refiner.uses_texture:
                if cond is None:
                    raise ValueError("this target's refiner holds a neural texture: pass the frames' conditioning.")
                corr = cond[:, CORRESPONDENCE].float()
            with timed(self.times, "refine", len(out)):
                crops = refined_uint8(self.refiner, out.float(), self.window, self.bf16, corr, self.residual)
        else:
            crops = tensor_to_uint8(out)
            if self.scale > 1:
                with timed(self.times, "refine", len(out)):
                    crops = _enlarged(crops, self.scale)
        if self.details is not None:
            with timed(self.times, "detail", len(out)):
                for i, crop in enumerate(crops):
                    if cond is None:
                        self.details(crop)
                    else:
                        face = rendered_face(cond[i])
                        keep = feature_mask(cond[i, CORRESPONDENCE], face)
                        self.details(crop, region_weight(face, keep, len(crop)))
        return crops

    def mark(self, img: np.ndarray, pasted: bool = False) -> np.ndarray:
        """The visible label and the invisible watermark, as asked. ``pasted``: ``img`` is this finisher's
        compositor's output, the reference frame outside the crop's region; only the region is marked and the rest
        copied from the reference frame marked once (both marks are per pixel: the same frame, for less work)."""
        with timed(self.times, "marks"):
            if not (self.watermark or self.invisible_watermark):
                return img
            region = self.changed_region if pasted else None
            if region is None:
                return self._marks(img)
            x0, y0, x1, y1 = region
            h, w = img.shape[:2]
            out = self._marked_background.copy()
            out[y0:y1, x0:x1] = self._marks(img[y0:y1, x0:x1], (x0, y0, w, h))
            return out

    def _marks(self, img: np.ndarray, within: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """`mark` of a frame, or of its window ``within`` (`watermark.embed`) that the visible label does not touch."""
        if self.watermark and within is None:
            img = mark_synthetic(img)
        if self.invisible_watermark:
            img = embed(img, within=within)
        return img

    @property
    def changed_region(self) -> tuple[int, int, int, int] | None:
        """``(x0, y0, x1, y1)``: the only pixels in which `frame`'s outputs differ from one another, where `mark`
        marks a pasted frame alone (the compositor's region: outside it every pasted frame is the same reference
        frame, marked once or unmarked), also `video.VideoWriter.write`'s ``changed``; None: anywhere (no
        compositor, or the visible label inside the region: frames marked whole). Makes the marked reference frame
        once (the marks asked for, the compositor's background and region are fixed when the finisher is made)."""
        if self.compositor is None:
            return None
        if self._marked_background is None:
            bg, roi = self.compositor.background, self.compositor.roi
            box = label_box(*bg.shape[:2]) if self.watermark else None
            overlaps = box is not None and box[0] < roi[2] and roi[0] < box[2] and box[1] < roi[3] and roi[1] < box[3]
            self._marked_background = False if overlaps else self._marks(bg)
        return None if self._marked_background is False else self.compositor.roi

    def frame(self, crop: np.ndarray, cond: torch.Tensor | None = None) -> np.ndarray:
        """One refined crop -> the user's frame (pasted back when asked, marked). ``cond``: the frame's
        conditioning ``[9, R, R]``; pasted back, the reference frame's torso is kept below its rendered jaw
        (`Compositor`; without it, the generated torso)."""
        if self.compositor is not None:
            with timed(self.times, "paste-back"):
                torso = None
                if self.reference_torso:  # the reference frame's torso below this frame's jaw
                    torso = torso_line(rendered_face(cond), self.crop_size, self.reference_jaw)
                pasted = self.compositor(crop, torso)
            return self.mark(pasted, pasted=True)  # timed as "marks" on its own
        return self.mark(crop)

    def __call__(self, out: torch.Tensor, cond: torch.Tensor | None = None) -> list[np.ndarray]:
        """Generator output ``[B, 3, R, R]`` (and the same frames' conditioning, as for `crops` and `frame`) ->
        the user's frames, in order."""
        crops = self.crops(out, cond)
        return [self.frame(c, None if cond is None else cond[i]) for i, c in enumerate(crops)]

    def reset(self) -> None:
        """A new clip starts (the paste-back mask's smoothing and the detail's last pick are forgotten)."""
        if self.compositor is not None:
            self.compositor.reset()
        if self.details is not None:
            self.details.reset()

    def close(self) -> None:
        """Release the paste-back's segmenter (a mediapipe graph)."""
        if self.compositor is not None:
            self.compositor.close()
