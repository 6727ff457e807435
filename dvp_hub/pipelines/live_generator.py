"""The generator made ready for a run: for the live path before the camera starts, int8 where the CPU has the
engine, else compiled; for offline runs, int8 where asked or where the run is long enough to pay for calibrating
(`offline_int8`); and the one-BLAS-thread context the live stages prepare frames in. Calibration runs under one
lock, so two threads that need the same model (the Space's warm-up and a visitor's run) calibrate it once."""

from __future__ import annotations

import hashlib
import logging
import threading
from functools import partial

import numpy as np
import torch

from ..models import int8_cache
from ..models.inference import compiled_rest, generate_windows, input_dtype
from ..models.int8 import cache_int8_failure, cached_int8, int8_available, quantize_refiner
from ..render.conditioning import NUM_CHANNELS, ConditioningRenderer

# by default a run shorter than this stays float: calibrating the generator and the refiner (beside tracking, then
# kept on disk, `models.int8_cache`) cost a 100-frame run 1-2 s the first time, and int8 saves 9-16 ms a generated
# frame: a 282-frame run gained 1.2-1.7 s (benchmarks/results/offline_int8_threshold_cpu.json); 200 lies between
INT8_MIN_FRAMES = 200
# the generator's int8 ranges come from one window of each of this many stretches spread over the training clip: as
# close to float as three stretches of six windows (benchmarks/results/offline_int8_default_cpu.json), in a third of
# the time (the histogram observers cost per window)
CALIBRATION_RUNS = 6
_CALIBRATING = threading.Lock()  # one calibration at a time: a second caller waits and takes the cached result


def live_model(pipe, light: bool = True):
    """The generator a live session runs: the target's distilled ``live_generator`` where it has one and ``light``
    (`dvp_hub.distill`), else its full generator."""
    light_gen = getattr(pipe, "live_generator", None)
    return light_gen if (light and light_gen is not None) else pipe.generator


def calibration_windows(pipe, runs: int = 3, length: int = 16, generator=None) -> list[torch.Tensor]:
    """Conditioning windows ``[1, 9, Nw, R, R]`` of the target's own training frames, for int8 calibration:
    ``runs`` stretches of ``length`` consecutive frames spread over the training clip (``length - Nw + 1``
    windows each)."""
    gen = pipe.generator if generator is None else generator
    seq, w = pipe.target_state.sequence, gen.config.temporal_window
    n, size = pipe.target.config.train_frames, pipe.target.config.resolution
    length = min(max(length, w), n)
    renderer = ConditioningRenderer(device=pipe._execution_device)
    out = []
    for start in np.linspace(0, n - length, runs).round().astype(int):
        clip = renderer.render(seq, pipe.target.crop, size, frames=slice(start, start + length))
        x = clip.float().permute(1, 0, 2, 3)[None]  # [1, 9, T, R, R]
        out += [x[:, :, j : j + w].contiguous(memory_format=torch.channels_last_3d) for j in range(length - w + 1)]
    return out


def calibration_source(pipe, *settings) -> str:
    """A name for what `calibration_windows` makes of ``pipe``'s target with ``settings`` (`models.int8_cache` keys
    on it): a digest of the settings, the target's crop, its whole fitted sequence and camera, and its first frame's
    conditioning as rendered now (so a change of the renderer or of the face model's assets makes another name)."""
    seq, cfg, crop = pipe.target_state.sequence, pipe.target.config, pipe.target.crop
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((settings, int(cfg.train_frames), int(cfg.resolution), crop.x0, crop.y0, crop.size)).encode())
    h.update(repr(seq.camera).encode())
    for a in seq.arrays().values():
        h.update(np.ascontiguousarray(a).tobytes())
    first = ConditioningRenderer().render(seq, crop, int(cfg.resolution), frames=slice(0, 1))
    h.update(first.float().contiguous().numpy().tobytes())
    return h.hexdigest()


def int8_live_generator(pipe, generator):
    """``generator`` (`live_model`) quantized for the live path (`models.int8`), or None where int8 is
    unavailable or fails here (the compiled float generator runs instead; a failure is logged once)."""
    ok, _why = int8_available(pipe._execution_device)
    if not ok:
        return None
    try:
        with _CALIBRATING:  # length 0: one window a stretch
            windows = partial(calibration_windows, pipe, CALIBRATION_RUNS, 0, generator)
            return cached_int8(generator, windows, partial(calibration_source, pipe, CALIBRATION_RUNS, 0))
    except Exception as err:  # noqa: BLE001 - an unsupported op in a future PyTorch: the float path still works
        cache_int8_failure(generator)  # not tried (nor logged) again for these weights in this process
        logging.getLogger("dvp_hub").warning(
            "the int8 generator is unavailable (%s); running it in float", str(err).strip().splitlines()[0][:160]
        )
        return None


def int8_refiner(pipe, refiner, window, generator8):
    """The int8 stand-in for ``refiner``'s detail branch (`models.int8.quantize_refiner`) inside ``window``,
    calibrated on what ``generator8`` (the int8 generator, `int8_live_generator`) makes of the target's own frames,
    and cached on the refiner; None where the refiner holds a neural texture or quantizing fails (the float
    refiner runs; logged)."""
    if refiner is None or refiner.uses_texture:
        return None
    key = (tuple(window), id(generator8), *((p.data_ptr(), p._version) for p in refiner.parameters()))
    with _CALIBRATING:
        cached = getattr(refiner, "_dvp_int8", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        residual = _quantized_refiner(pipe, refiner, window, generator8)
        if residual is not None:
            object.__setattr__(refiner, "_dvp_int8", (key, residual))
    return residual


def _quantized_refiner(pipe, refiner, window, generator8):
    """`int8_refiner`'s calibration, or its ranges kept on disk (`models.int8_cache`: where ``generator8`` came from
    an entry or made one); None (logged) where it fails."""
    try:
        x0, y0, x1, y1 = window
        nw = pipe.generator.config.temporal_window
        runs, length = 4, nw + 1  # 8 crops: histogram observers are slow
        disk = generator8.key and int8_cache.digest((refiner,), "refiner", tuple(window), runs, length, generator8.key)
        observed = int8_cache.load(disk) if disk else None
        if observed is not None:
            try:
                return quantize_refiner(refiner, torch.zeros(1, 3, y1 - y0, x1 - x0), observed=observed)
            except ValueError:
                pass  # an entry from another refiner: calibrate again
        windows = calibration_windows(pipe, runs=runs, length=length)
        crops = torch.cat([generator8.clip(w[0].permute(1, 0, 2, 3), nw) for w in windows])
        residual = quantize_refiner(refiner, crops[:, :, y0:y1, x0:x1])
        if disk:
            int8_cache.save(disk, residual.observed)
    except Exception as err:  # noqa: BLE001 - an unsupported op in a future PyTorch: the float refiner still works
        logging.getLogger("dvp_hub").warning(
            "the int8 refiner is unavailable (%s); running it in float", str(err).strip().splitlines()[0][:160]
        )
        return None
    return residual


def offline_int8(pipe, int8: bool | None, fast: bool = True, frames: int | None = None):
    """The int8 generator (`models.int8.Int8WindowGenerator`) an offline run of ``frames`` frames uses on a CPU with
    the engine, or None for the float one. ``int8=True``: wherever it can; False: never; None (the default): for a
    run of at least `INT8_MIN_FRAMES` frames (long enough to pay for calibrating), whatever ran before in the
    process. ``fast=False`` (plain fp32) never uses it. Why it is the default:
    `benchmarks/results/offline_int8_default_cpu.json`."""
    if int8 is False or not fast or pipe._execution_device.type != "cpu":  # RunOptions makes int8 a bool or None
        return None
    if int8 is None and frames is not None and frames < INT8_MIN_FRAMES:
        return None
    return int8_live_generator(pipe, pipe.generator)


def compile_live_generator(pipe, generator) -> bool:
    """Compile ``generator`` (`live_model`) for the live path's one-window batch (`models.inference.compiled_rest`):
    seconds the first time in a process, one generator run after. False where it fell back to eager."""
    gen, size = generator, pipe.target.config.resolution
    w = gen.config.temporal_window
    window = torch.zeros(w, size, size, NUM_CHANNELS, dtype=input_dtype(gen, True), device=pipe._execution_device)
    with torch.no_grad():
        generate_windows(gen, window.permute(0, 3, 1, 2), fast=True, compiled=True)  # as the ring is read
    return compiled_rest(gen) is not None
