"""The fast inference path of the generator: BatchNorm folded into convolutions, channels_last, bf16.

The folded copy gives the eager generator's outputs up to rounding (coarser in bf16) in less time
(why: benchmarks/results/network_cpu.json). `fast_generator` makes the folded copy once; `generate` runs it on
stacked windows. `generate_windows` runs it on a clip of conditioning images, the first level computed as a
3D convolution over time, which is what the pipeline calls (no 99-channel stack is ever built).
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import time

import torch
from torch._inductor import config as inductor_config

from .fx_guard import guarded
from .generator import RenderingToVideoGenerator
from .windows import stack_windows


def _fold(conv, bn, transposed: bool) -> None:
    scale = bn.weight.data / torch.sqrt(bn.running_var + bn.eps)
    shape = (1, -1, 1, 1) if transposed else (-1, 1, 1, 1)
    conv.weight.data = conv.weight.data * scale.reshape(shape).to(conv.weight.dtype)
    bias = conv.bias.data if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.bias = torch.nn.Parameter(((bias - bn.running_mean) * scale + bn.bias.data).to(conv.weight.dtype))


def temporal_first_conv(model: RenderingToVideoGenerator) -> torch.nn.Conv3d:
    """The first level's 2D convolution over ``9 * Nw`` stacked channels as a 3D convolution over time.

    Channel ``k * 9 + c`` of the stack is channel ``c`` of frame ``t - Nw + 1 + k``, so a ``(Nw, 4, 4)`` kernel
    with stride ``(1, 2, 2)`` over a ``[9, T, R, R]`` clip gives the first level of every complete window at
    once, with no stack: the same products, summed in another order.
    """
    conv, cfg = model.downs[0].conv, model.config
    c0, w = conv.out_channels, cfg.temporal_window
    out = torch.nn.Conv3d(cfg.in_channels, c0, (w, 4, 4), (1, 2, 2), (0, 1, 1), bias=conv.bias is not None)
    out.weight.data = conv.weight.data.view(c0, w, cfg.in_channels, 4, 4).transpose(1, 2).contiguous()
    if conv.bias is not None:
        out.bias.data = conv.bias.data.clone()
    return out.to(conv.weight.device, conv.weight.dtype).eval().to(memory_format=torch.channels_last_3d)


def fold_batchnorm(model: RenderingToVideoGenerator) -> RenderingToVideoGenerator:
    """An eval-mode copy of ``model`` with every BatchNorm folded into the convolution before it."""
    caches = {k: model.__dict__.pop(k) for k in [k for k in model.__dict__ if k.startswith("_dvp_")]}
    try:  # the copy leaves out the model's cached fast, int8 and compiled copies (they would nest)
        m = copy.deepcopy(model).eval()
    finally:
        model.__dict__.update(caches)
    for d in m.downs:
        if isinstance(d.norm, torch.nn.BatchNorm2d):
            _fold(d.conv, d.norm, False)
            d.norm = torch.nn.Identity()
    for u in m.ups:
        if isinstance(u.norm1, torch.nn.BatchNorm2d):
            _fold(u.up, u.norm1, True)
            u.norm1 = torch.nn.Identity()
        if isinstance(u.norm2, torch.nn.BatchNorm2d):
            _fold(u.refine, u.norm2, False)
            u.norm2 = torch.nn.Identity()
    return m.to(memory_format=torch.channels_last)


def bf16_supported(device: torch.device) -> bool:
    """Whether the fast path computes in bf16 on ``device``: on a GPU where it is supported; on a CPU where the
    instruction set has it *and* it measures faster than fp32 here (`_bf16_faster_on_cpu`), since a CPU can
    report avx512_bf16 and still run bf16 convolutions slower than fp32
    (why: docs/figures-2026-11.md, 'Design measurements'). ``DVP_BF16=0`` / ``1`` overrides."""
    forced = os.environ.get("DVP_BF16", "").strip().lower()
    if forced in ("0", "1", "false", "true", "no", "yes"):
        return forced in ("1", "true", "yes")
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    cap = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()
    return ("AVX512" in cap.upper() or "AMX" in cap.upper()) and _bf16_faster_on_cpu()


@functools.lru_cache(maxsize=1)
@guarded  # its probe convolution is a forward pass like any other (`fx_guard`)
def _bf16_faster_on_cpu() -> bool:
    """One 3x3 convolution (64 channels, 64 px, channels_last) timed in fp32 and under bf16 autocast, once per
    process (cached): True only where bf16 is at least 10% faster."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).eval().to(memory_format=torch.channels_last)
    x = torch.randn(1, 64, 64, 64).contiguous(memory_format=torch.channels_last)

    def best(bf16: bool) -> float:
        times = []
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            xx = x.to(torch.bfloat16) if bf16 else x
            for _ in range(7):
                t = time.perf_counter()
                conv(xx)
                times.append(time.perf_counter() - t)
        return min(times[2:])

    return best(True) < 0.9 * best(False)


def _fast(model: RenderingToVideoGenerator) -> tuple:
    key = (model.ups[0].up.weight._version, model.downs[0].conv.weight._version, model.device, model.dtype)
    cached = getattr(model, "_dvp_fast", None)
    if cached is None or cached[0] != key:
        net = fold_batchnorm(model)
        cached = (key, net, temporal_first_conv(net))
        object.__setattr__(model, "_dvp_fast", cached)  # a plain attribute: not registered as a submodule
    return cached


def fast_generator(model: RenderingToVideoGenerator) -> RenderingToVideoGenerator:
    """The folded, channels_last copy, cached on the model and rebuilt if its weights change in place."""
    return _fast(model)[1]


def input_dtype(model: RenderingToVideoGenerator, fast: bool = True) -> torch.dtype:
    """The dtype `generate` computes in: bf16 on the fast path where the hardware has it, else the model's."""
    if fast and not model.training and model.dtype == torch.float32 and bf16_supported(model.device):
        return torch.bfloat16
    return model.dtype


@torch.inference_mode()
@guarded
def generate(model: RenderingToVideoGenerator, conditioning: torch.Tensor, fast: bool = True) -> torch.Tensor:
    """Run the generator in eval mode: ``B x 9Nw x R x R`` -> ``B x 3 x R x R`` (float32, [-1, 1]).

    Give the conditioning in channels_last memory and in `input_dtype` (as `windows.stack_windows` builds it)
    and nothing is copied before the first convolution.
    """
    if not fast or model.training:
        return model(conditioning.to(model.dtype)).float()
    net = fast_generator(model)
    dtype = input_dtype(model, fast)
    x = conditioning.to(dtype).contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        return net(x).float()


def compiled_rest(model: RenderingToVideoGenerator):
    """Everything after the first level of the fast copy, compiled by inductor with its weights frozen as
    constants (prepacked for oneDNN), or None where that is off or failed. Cached on the model like `_fast`.

    The compiled levels give the eager ones' outputs up to rounding, in less time on a CPU; the first level's 3D
    convolution stays outside, as compiling it too is slower (why: docs/figures-2026-11.md, 'Design measurements').
    The first call compiles (seconds; fewer with inductor's cache warm). Needs a C++ compiler (g++); without one,
    or with ``DVP_COMPILE=0``, the eager path runs. Shapes are static: meant for the live path's constant
    one-window batch.
    """
    if os.environ.get("DVP_COMPILE", "1").strip().lower() in ("0", "false", "no"):
        return None
    key, net, _ = _fast(model)
    cached = getattr(model, "_dvp_compiled", None)
    if cached is None or cached[0] != key:
        compiled = torch.compile(net.forward_from_first_level, dynamic=False)

        def fn(first):
            with inductor_config.patch(freezing=True):  # read when it compiles; `options=` does not pass it on
                return compiled(first)

        cached = (key, fn)
        object.__setattr__(model, "_dvp_compiled", cached)
    return cached[1]


def _compile_failed(model: RenderingToVideoGenerator, err: BaseException) -> None:
    """Keep the eager path for this model from now on, and say why once."""
    object.__setattr__(model, "_dvp_compiled", (_fast(model)[0], None))
    logging.getLogger("dvp_hub").warning(
        "the compiled generator is unavailable (%s); running it eagerly", str(err).strip().splitlines()[0][:160]
    )


@torch.inference_mode()
@guarded
def generate_windows(
    model: RenderingToVideoGenerator, clip: torch.Tensor, fast: bool = True, compiled: bool = False
) -> torch.Tensor:
    """Frames of a clip of conditioning images: ``[T, 9, R, R]`` -> ``[T - Nw + 1, 3, R, R]`` (float32, [-1, 1]).

    ``compiled``: the levels after the first run through `compiled_rest` (for a clip length that stays the same,
    as in the live path).

    Output ``j`` is the generator on the window of clip frames ``j .. j + Nw - 1`` (so the first ``Nw - 1``
    frames are history; pad the clip's start with copies of its first frame, as training clamps windows).
    The fast path computes the first level as one 3D convolution over time (`temporal_first_conv`): with
    the clip in channels_last memory and in `input_dtype` nothing is copied, and no 99-channel stack is
    built, which is faster than stacking plus the 2D convolution
    (why: docs/figures-2026-11.md, 'Design measurements').
    """
    w = model.config.temporal_window
    if not fast or model.training:
        return generate(model, stack_windows(clip, w - 1, len(clip), 0, w), fast=False)
    _, net, conv3d = _fast(model)
    dtype = input_dtype(model, fast)
    x = clip.to(dtype).permute(1, 0, 2, 3)[None]  # [1, 9, T, R, R]: channels_last_3d memory for a channels_last clip
    x = x.contiguous(memory_format=torch.channels_last_3d)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        first = net.downs[0].act(conv3d(x)[0].transpose(0, 1))  # [T - w + 1, C0, R/2, R/2], channels_last
        rest = compiled_rest(model) if compiled else None
        if rest is not None:
            try:
                return rest(first).float()
            except Exception as err:  # noqa: BLE001 - no compiler, an unsupported op: the eager path still works
                _compile_failed(model, err)
        return net.forward_from_first_level(first).float()
