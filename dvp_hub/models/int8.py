"""The generator (live and offline) and the refiner's detail branch in int8 on CPU: PyTorch's x86 quantized engine
(oneDNN's VNNI kernels).

The live path runs the generator on one window per frame. On a two-core CPU where bf16 is no faster than fp32,
the fp32 generator can take longer than preparing the conditioning (face mesh, fit, render), and the two together
miss a 30 fps camera; in int8 the generator takes a fraction of its fp32 time
(why: benchmarks/results/int8_cpu.txt, from `benchmarks/bench_int8.py`). Quantized with FX graph mode
(`torch.ao.quantization.quantize_fx`: weights int8, per-channel for the convolutions and per-tensor for the
transposed ones; activations uint8, ranges calibrated with histogram observers on the target's own conditioning),
the whole generator runs in int8, its first level's 3D convolution over the window included.

Two things make this more than a call to the quantizer:

- **A kernel bug, detected at run time.** PyTorch 2.13's x86/oneDNN quantized ``conv_transpose2d`` reads the
  weight's in- and out-channel axes wrongly when they differ (the output is then far from the float one; equal
  counts are right). `deconv_weight_layout` finds out, once per process, on a small deconvolution whether
  the weight must be handed over as it is or rearranged (`_swap_layout`), and int8 is off where neither gives
  the float result. So a PyTorch that fixes the bug is picked up without a change here.
- **Fallback, not failure.** ``torch.ao.quantization`` and quantized tensors are deprecated in PyTorch; where they
  are gone, the engine is missing, or the probe fails, `int8_available` says why and the live path keeps the
  compiled fp32 generator. ``DVP_INT8=0`` turns int8 off, live and offline.

Calibrated ranges are kept on disk (`int8_cache`) where the caller names what it calibrated on (`cached_int8`'s
``source_fn``): a later process loads them into the prepared model and converts, with no calibration pass.
"""

from __future__ import annotations

import copy
import functools
import os
import warnings

import torch

from . import int8_cache
from .fx_guard import guarded, running, tracing
from .generator import RenderingToVideoGenerator
from .inference import _fast


def _swap_layout(w: torch.Tensor) -> torch.Tensor:
    """The weight ``[C_in, C_out, k, k]`` rearranged so that the buggy kernel reads it as the float one does."""
    cin, cout, *k = w.shape
    return w.transpose(0, 1).contiguous().reshape(cin, cout, *k).transpose(0, 1).contiguous().view(cin, cout, *k)


@functools.lru_cache(maxsize=1)
def deconv_weight_layout() -> str | None:
    """``"plain"`` where the quantized transposed convolution reads its weight as the float one, ``"swapped"``
    where it needs `_swap_layout` (PyTorch 2.13), None where neither matches or quantized ops are unavailable."""
    try:
        with warnings.catch_warnings():  # deprecation notes of torch.ao and of its TorchScript parts
            warnings.simplefilter("ignore")
            import torch.ao.nn.quantized as nnq  # lazy: deprecated torch.ao may go: int8 then off, no import error

        if "x86" not in torch.backends.quantized.supported_engines:
            return None
        gen = torch.Generator().manual_seed(0)
        ref = torch.nn.ConvTranspose2d(6, 4, 4, 2, 1).eval()
        x = torch.rand(1, 6, 5, 5, generator=gen)
        with running(), torch.no_grad(), _engine(), warnings.catch_warnings():  # probe passes are forwards too
            warnings.simplefilter("ignore")
            want = ref(x)
            scale = float(want.abs().max()) * 2 / 255
            for name, fix in (("plain", lambda w: w), ("swapped", _swap_layout)):
                q = nnq.ConvTranspose2d(6, 4, 4, 2, 1)
                w = ref.weight.detach()
                q.set_weight_bias(
                    torch.quantize_per_tensor(fix(w), float(w.abs().max()) / 127, 0, torch.qint8), ref.bias.detach()
                )
                q.scale, q.zero_point = scale, 128
                got = q(torch.quantize_per_tensor(x, 1 / 255, 0, torch.quint8)).dequantize()
                if float((got - want).abs().max()) < 4 * scale:
                    return name
    except Exception:  # noqa: BLE001 - no quantized engine, a removed API: int8 is simply unavailable
        return None
    return None


class _engine:
    """The x86 quantized engine for the duration of a block (the process-wide setting is restored after)."""

    def __enter__(self):
        self.prev = torch.backends.quantized.engine
        torch.backends.quantized.engine = "x86"

    def __exit__(self, *exc):
        torch.backends.quantized.engine = self.prev


def int8_available(device: torch.device | str = "cpu") -> tuple[bool, str]:
    """Whether the generator runs in int8 here (live, and offline where a run asks for it), and why not where it
    does not."""
    forced = os.environ.get("DVP_INT8", "").strip().lower()
    if forced in ("0", "false", "no"):
        return False, "DVP_INT8=0"
    if torch.device(device).type != "cpu":
        return False, "int8 is the CPU path (a GPU runs the float generator)"
    if deconv_weight_layout() is None:
        return False, "this PyTorch has no working x86 quantized engine"
    return True, ""


class _WindowGenerator(torch.nn.Module):
    """The generator on one window ``[1, 9, Nw, R, R]`` -> ``[1, 3, R, R]``: the first level as a 3D convolution
    over time (as `inference.generate_windows`), then the rest of the folded U-Net; what FX traces."""

    def __init__(self, net: RenderingToVideoGenerator, conv3d: torch.nn.Conv3d):
        super().__init__()
        self.net, self.conv3d = net, conv3d

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        # squeeze, not [0].transpose(0, 1) as the float path: the quantizer keeps a squeeze in int8, not an index
        return self.net.forward_from_first_level(self.net.downs[0].act(self.conv3d(window).squeeze(2)))


class Int8WindowGenerator:
    """A quantized `_WindowGenerator`. The live path keeps its window of conditioning frames quantized (`ring`,
    each new frame written once by `quantize`), so the window reaches the first convolution as a view, with
    no copy: ``gen(ring[j : j + Nw].permute(1, 0, 2, 3)[None])`` -> ``[1, 3, R, R]`` float in [-1, 1].
    Conditioning images lie in [-1, 1]: they are quantized in steps of 2 / 255 (zero point 128)."""

    scale, zero_point = 2 / 255, 128

    def __init__(self, module: torch.nn.Module):
        self.module = module
        self.observed: dict[str, torch.Tensor] = {}  # its activation observers' state (`int8_cache`)
        self.key: str | None = None  # its `int8_cache` entry's name, where it has one

    def ring(self, frames: int, size: int, channels: int = 9) -> torch.Tensor:
        """An empty quantized ring ``[frames, channels, size, size]`` in channels_last memory."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zero = torch.zeros(frames, size, size, channels)
            return torch.quantize_per_tensor(zero, self.scale, self.zero_point, torch.quint8).permute(0, 3, 1, 2)

    # No warnings.catch_warnings() per frame (it is not thread-safe, and the live stages run in two threads):
    # PyTorch's deprecation note on quantized tensors is a warn-once, spent by `deconv_weight_layout`'s probe.
    @classmethod
    def quantize(cls, cond: torch.Tensor) -> torch.Tensor:
        return torch.quantize_per_tensor(cond.float(), cls.scale, cls.zero_point, torch.quint8)

    @torch.inference_mode()
    @guarded
    def __call__(self, window: torch.Tensor) -> torch.Tensor:
        with _engine():
            return self.module(window)

    @torch.inference_mode()
    def clip(self, clip: torch.Tensor, window: int) -> torch.Tensor:
        """A clip of conditioning images, as `inference.generate_windows` takes it: ``[T, 9, R, R]`` in [-1, 1]
        (or already `quantize`\ d) -> ``[T - window + 1, 3, R, R]`` float32; quantized once, then one call per window
        on views of it."""
        q = clip if clip.is_quantized else self.quantize(clip)
        return torch.cat([self(q[j : j + window].permute(1, 0, 2, 3)[None]) for j in range(len(clip) - window + 1)])


def _traced(module: torch.nn.Module) -> torch.fx.GraphModule:
    """``module`` traced by FX with its no-op modules (the folded BatchNorms' Identity, eval-mode Dropout) taken out
    of the graph, and its LeakyReLUs out of place: the quantizer leaves a module it does not know in float, with a
    dequantize before and a quantize after, and the quantized LeakyReLU warns about ``inplace``. ``torch.relu``
    becomes ``F.relu``, which the quantizer fuses into the convolution before it or runs in int8 (``torch.relu``
    would run in float, between a dequantize and a quantize)."""
    for m in module.modules():
        if isinstance(m, torch.nn.LeakyReLU):
            m.inplace = False
    with tracing():  # FX patches every module's __call__ meanwhile: other threads' forwards wait
        gm = torch.fx.symbolic_trace(module)
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target is torch.relu:
            node.target = torch.nn.functional.relu  # fused with the convolution before it (torch.relu is not)
        elif node.op == "call_module" and isinstance(
            gm.get_submodule(node.target), (torch.nn.Identity, torch.nn.Dropout)
        ):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
    gm.graph.lint()
    gm.recompile()
    return gm


def quantize_window_generator(
    model: RenderingToVideoGenerator, windows: list[torch.Tensor], observed: dict | None = None
) -> Int8WindowGenerator:
    """Quantize ``model`` for one-window calls, its activation ranges calibrated on ``windows`` (float
    ``[1, 9, Nw, R, R]`` conditioning windows, a few dozen of the target's own), or taken from ``observed`` (the
    ``observed`` state of an earlier calibration of the same weights, `int8_cache`; ``windows`` then gives only the
    shape). The result's ``observed`` holds its observers' state. Raises where int8 is unavailable, or where
    ``observed`` does not fit the model."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torch.ao.nn.quantized as nnq  # lazy: deprecated torch.ao may go (see int8_available)
        from torch.ao.quantization import (  # lazy
            HistogramObserver,
            MinMaxObserver,
            QConfig,
            get_default_qconfig_mapping,
        )
        from torch.ao.quantization.fx.custom_config import PrepareCustomConfig  # lazy

    layout = deconv_weight_layout()
    if layout is None:
        raise RuntimeError("this PyTorch has no working x86 quantized engine")
    _, net, conv3d = _fast(model)
    module = _traced(_WindowGenerator(copy.deepcopy(net).float(), copy.deepcopy(conv3d).float()).eval())
    qmap = get_default_qconfig_mapping("x86")
    per_tensor = QConfig(  # the transposed convolutions: per-tensor weights (a rearranged weight keeps its scale)
        activation=HistogramObserver.with_args(reduce_range=False),
        weight=MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric),
    )
    qmap.set_object_type(torch.nn.ConvTranspose2d, per_tensor)
    with _engine(), warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        config = PrepareCustomConfig().set_input_quantized_indexes([0])  # the ring is quantized already
        batches = (Int8WindowGenerator.quantize(w).dequantize() for w in windows)  # as the ring holds them
        quantized, state = _fx_quantized(module, qmap, windows[0].float(), batches, observed, config)
        if layout == "swapped":
            for mod in quantized.modules():
                if isinstance(mod, nnq.ConvTranspose2d):
                    wq = mod.weight()
                    w = _swap_layout(wq.dequantize())
                    mod.set_weight_bias(torch.quantize_per_tensor(w, wq.q_scale(), 0, torch.qint8), mod.bias())
    gen = Int8WindowGenerator(quantized.eval())
    gen.observed = state
    ring = gen.ring(windows[0].shape[2], windows[0].shape[-1])
    ring[:] = gen.quantize(windows[0][0].permute(1, 0, 2, 3))
    for _ in range(2):  # oneDNN makes its kernels on the first calls: here, not on a camera frame
        gen(ring.permute(1, 0, 2, 3)[None])
    return gen


def _fx_quantized(module, qmap, example, batches, observed=None, config=None) -> tuple[torch.nn.Module, dict]:
    """``(quantized, observed)``: ``module`` prepared by FX for ``example``, calibrated on ``batches`` (or given the
    ranges ``observed`` of an earlier calibration, `_load_observers`), converted; and its observers' state. FX
    patches every module's ``__call__`` while it traces (prepare, convert): other threads' forward passes wait then,
    and the calibration passes run beside theirs (`fx_guard`). Call it under `_engine`, with warnings ignored."""
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx  # lazy: deprecated torch.ao may go

    with tracing():
        prepared = prepare_fx(module, qmap, (example,), prepare_custom_config=config)
    if observed is not None:
        _load_observers(prepared, observed)
    else:
        with running():
            for batch in batches:
                prepared(batch)
    state = _observers(prepared)
    with tracing():
        return convert_fx(prepared), state


def _observers(prepared: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The activation observers' state of a prepared (calibrated) model: what converting it reads."""
    return {k: v.clone() for k, v in prepared.state_dict().items() if "activation_post_process" in k}


def _load_observers(prepared: torch.nn.Module, observed: dict[str, torch.Tensor]) -> None:
    """Load `_observers` of an earlier calibration; ValueError unless they are this model's observers (the same
    names, shapes and dtypes, finite ranges)."""
    own = _observers(prepared)
    if set(observed) != set(own) or any(
        v.shape != own[k].shape or v.dtype != own[k].dtype or not torch.isfinite(v).all() for k, v in observed.items()
    ):
        raise ValueError("the kept int8 ranges are not this model's")
    try:
        prepared.load_state_dict(observed, strict=False)
    except RuntimeError as err:
        raise ValueError(f"the kept int8 ranges do not load: {err}") from err


def cache_int8_failure(model: RenderingToVideoGenerator) -> None:
    """Remember that quantizing ``model``'s current weights failed: `cached_int8` then returns None at once."""
    object.__setattr__(model, "_dvp_int8", (_fast(model)[0], None))


def cached_int8(model: RenderingToVideoGenerator, windows_fn, source_fn=None) -> Int8WindowGenerator | None:
    """`quantize_window_generator` once per model and weights in a process (``windows_fn()`` gives the calibration
    windows when it runs), cached on the model like the fast copy; None where `cache_int8_failure` recorded that it
    failed for these weights. ``source_fn()``: a name for what ``windows_fn`` makes its windows of (asked for only
    where the process has no int8 model yet); with it the ranges are also kept on disk (`int8_cache`), so a later
    process converts without calibrating (the same int8 model)."""
    key = _fast(model)[0]
    cached = getattr(model, "_dvp_int8", None)
    if cached is None or cached[0] != key:
        cached = (key, _calibrated_or_kept(model, windows_fn, source_fn))
        object.__setattr__(model, "_dvp_int8", cached)
    return cached[1]


def _calibrated_or_kept(model: RenderingToVideoGenerator, windows_fn, source_fn) -> Int8WindowGenerator:
    if source_fn is None or not int8_cache.enabled():
        return quantize_window_generator(model, windows_fn())
    _, net, conv3d = _fast(model)
    disk = int8_cache.digest((net, conv3d), "generator", source_fn())
    observed = int8_cache.load(disk)
    gen = None
    if observed is not None:
        c = model.config
        shape = (1, c.in_channels, c.temporal_window, c.resolution, c.resolution)
        try:
            gen = quantize_window_generator(model, [torch.zeros(shape)], observed=observed)
        except ValueError:
            gen = None  # an entry from another model: calibrate again
    if gen is None:
        gen = quantize_window_generator(model, windows_fn())
        int8_cache.save(disk, gen.observed)
    gen.key = disk
    return gen


class _RefinerResidual(torch.nn.Module):
    """A `FaceRefiner`'s `FaceRefiner.detail` branch as a module's forward, for FX (what int8 runs; the bilinear
    base stays float)."""

    def __init__(self, refiner):
        super().__init__()
        self.refiner = refiner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.refiner.detail(x)


def quantize_refiner(refiner, crops: torch.Tensor, observed: dict | None = None):
    """A texture-less `FaceRefiner`'s residual (`_RefinerResidual`) in int8, its activation ranges calibrated on
    ``crops`` (generator outputs ``[N, 3, h, w]`` in [-1, 1], cut to the refiner's window): a callable
    ``[B, 3, h, w]`` float -> ``[B, 3 s^2, h, w]`` float, for `FaceRefiner.refine`'s ``residual``. Weights int8
    per channel, activations uint8 (histogram observers). ``observed``: the ranges of an earlier calibration of the
    same refiner on the same crops (its result's ``observed``, `int8_cache`; ``crops`` then gives only the shape).
    Raises where int8 is unavailable, or where ``observed`` does not fit the refiner."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import get_default_qconfig_mapping  # lazy: deprecated torch.ao may go

    if deconv_weight_layout() is None:
        raise RuntimeError("this PyTorch has no working x86 quantized engine")
    module = _RefinerResidual(copy.deepcopy(refiner).float().eval()).eval()
    crops = crops.float().contiguous(memory_format=torch.channels_last)
    with _engine(), warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        batches = (crops[i : i + 4] for i in range(0, len(crops), 4))
        quantized, state = _fx_quantized(module, get_default_qconfig_mapping("x86"), crops[:1], batches, observed)
        quantized.eval()

    @torch.inference_mode()
    @guarded
    def residual(x: torch.Tensor) -> torch.Tensor:
        with _engine():
            return quantized(x)

    residual(crops[:1])  # oneDNN makes its kernels on the first call
    residual.observed = state
    return residual
