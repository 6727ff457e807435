"""The live path's int8 generator: the quantized deconvolution's weight layout, closeness to the float generator,
the live session on it, and the fallback where int8 is off or fails."""

import copy
import os

import numpy as np
import pytest
import torch

from dvp_hub.video import VideoReader

from .conftest import clip


def _need_int8():
    from dvp_hub.models.int8 import int8_available

    ok, why = int8_available("cpu")
    if not ok:
        pytest.skip(f"no int8 here: {why}")


def test_quantized_deconvolution_gives_the_float_result_with_the_layout_found():
    """The layout is found on a 6 -> 4 deconvolution; it must hold for other shapes (here 24 -> 8 with a bias,
    and 8 -> 24), where PyTorch 2.13's kernel, handed the weight as it is, is off by most of its range."""
    import torch.ao.nn.quantized as nnq

    from dvp_hub.models.int8 import _engine, _swap_layout, deconv_weight_layout

    _need_int8()
    layout = deconv_weight_layout()
    torch.manual_seed(0)
    for cin, cout in ((24, 8), (8, 24)):
        ref = torch.nn.ConvTranspose2d(cin, cout, 4, 2, 1).eval()
        x = torch.rand(1, cin, 7, 7).contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), _engine():
            want = ref(x)
            step = float(want.abs().max()) * 2 / 255
            w = ref.weight.detach()
            q = nnq.ConvTranspose2d(cin, cout, 4, 2, 1)
            fixed = _swap_layout(w) if layout == "swapped" else w
            q.set_weight_bias(torch.quantize_per_tensor(fixed, float(w.abs().max()) / 127, 0, torch.qint8), ref.bias)
            q.scale, q.zero_point = step, 128
            got = q(torch.quantize_per_tensor(x, 1 / 255, 0, torch.quint8)).dequantize()
        assert (got - want).abs().max() < 3 * step, (cin, cout, layout)


def _windows(pipe, n=4):
    from dvp_hub.pipelines.live_generator import calibration_windows

    return calibration_windows(pipe, runs=2, length=pipe.generator.config.temporal_window + n)


def test_int8_generator_follows_the_float_one_on_the_targets_conditioning(tiny_pipeline):
    from dvp_hub.models.inference import generate_windows
    from dvp_hub.models.int8 import quantize_window_generator

    _need_int8()
    gen = tiny_pipeline.generator
    windows = _windows(tiny_pipeline)
    q = quantize_window_generator(gen, windows[::2])  # calibrated on half, compared on all
    ring = q.ring(len(windows), gen.config.resolution)
    diffs = []
    for w in windows:
        want = generate_windows(gen, w[0].permute(1, 0, 2, 3).contiguous(memory_format=torch.channels_last))
        qw = q.quantize(w[0].permute(1, 0, 2, 3))  # [Nw, 9, R, R], as the ring holds it
        ring[: len(qw)] = qw
        got = q(ring[: len(qw)].permute(1, 0, 2, 3)[None])
        assert got.shape == want.shape == (1, 3, 64, 64) and got.dtype == torch.float32
        diffs.append((got - want).abs())
    d = torch.cat(diffs)
    assert d.mean() < 0.02 and d.max() < 0.25  # [-1, 1]: mean under 2.5 grey levels


def test_live_session_runs_int8_by_default_close_to_the_float_session(tiny_pipeline, monkeypatch):
    _need_int8()
    frames = [f.copy() for f in VideoReader(clip("talking-d3.mp4"), max_frames=16)]
    s8 = tiny_pipeline.live(fps=30, calibration_seconds=0.2)
    sf = tiny_pipeline.live(fps=30, calibration_seconds=0.2, int8=False)
    assert s8.int8 is not None and sf.int8 is None
    a = np.stack([s8.push(f) for f in frames]).astype(np.float32)
    b = np.stack([sf.push(f) for f in frames]).astype(np.float32)
    assert a.shape == b.shape == (16, 64, 64, 3)
    assert np.abs(a - b).mean() < 3.0  # grey levels (the visible label is in both)
    monkeypatch.setenv("DVP_INT8", "0")
    assert tiny_pipeline.live(fps=30).int8 is None


def test_int8_failure_falls_back_to_the_float_generator_with_one_warning(tiny_pipeline, monkeypatch, caplog):
    import dvp_hub.models.int8 as int8

    _need_int8()

    def broken(model, windows, observed=None):
        raise RuntimeError("unsupported operator quantized::conv3d\nmore detail")

    monkeypatch.setattr(int8, "quantize_window_generator", broken)
    monkeypatch.setattr(tiny_pipeline.generator, "_dvp_int8", None, raising=False)
    with caplog.at_level("WARNING", logger="dvp_hub"):
        session = tiny_pipeline.live(fps=30, calibration_seconds=0.2)
    assert session.int8 is None
    out = [session.push(f) for f in VideoReader(clip("talking-d3.mp4"), max_frames=8)]
    assert len(out) == 8 and out[-1].shape == (64, 64, 3)
    from dvp_hub.pipelines.live_generator import int8_live_generator

    assert int8_live_generator(tiny_pipeline, tiny_pipeline.generator) is None  # the failure is remembered
    msgs = [r.getMessage() for r in caplog.records if r.name == "dvp_hub"]
    assert len(msgs) == 1 and "quantized::conv3d" in msgs[0] and "more detail" not in msgs[0]


def test_offline_run_is_int8_by_default_on_a_cpu_and_stays_close_to_float(tiny_pipeline, monkeypatch):
    """On a CPU with the engine a run takes the int8 generator over the clip's windows when asked (``int8=True``)
    and by default where the run is long enough to pay for calibrating, whatever ran before: the frames stay
    within a few grey levels of the float run (``int8=False``); fast=False and ``DVP_INT8=0`` never use it."""
    from dvp_hub.pipelines import live_generator

    _need_int8()
    src = clip("talking-d3.mp4")
    kw = {"max_frames": 12, "progress": False, "watermark": False, "invisible_watermark": False}
    monkeypatch.setattr(tiny_pipeline.generator, "_dvp_int8", None, raising=False)
    plain = tiny_pipeline(source_video=src, int8=False, **kw)
    assert plain.stats["generator"] == "float"
    assert tiny_pipeline(source_video=src, **kw).stats["generator"] == "float"  # too short to calibrate for
    monkeypatch.setattr(live_generator, "INT8_MIN_FRAMES", 12)
    default = tiny_pipeline(source_video=src, **kw)  # long enough: calibrates
    assert default.stats["generator"] == "int8"
    monkeypatch.setattr(live_generator, "INT8_MIN_FRAMES", 400)
    asked = tiny_pipeline(source_video=src, int8=True, **kw)
    assert asked.stats["generator"] == "int8" and np.array_equal(asked.frames, default.frames)
    assert tiny_pipeline(source_video=src, **kw).stats["generator"] == "float"  # short: calibrated or not
    assert tiny_pipeline(source_video=src, int8=0, **kw).stats["generator"] == "float"  # any false value
    assert tiny_pipeline(source_video=src, int8=True, fast=False, **kw).stats["generator"] == "float"
    monkeypatch.setenv("DVP_INT8", "0")
    assert tiny_pipeline(source_video=src, **kw).stats["generator"] == "float"
    a, b = asked.frames[0], plain.frames[0]
    assert a.shape == b.shape == (12, 64, 64, 3)
    assert np.abs(a - b).mean() * 255 < 3.0 and not np.array_equal(a, b)  # grey levels; int8 is not float


def test_int8_refiner_adds_the_float_detail_within_a_grey_level(tiny_pipeline):
    """The refiner's detail branch in int8 (`quantize_refiner`), calibrated on the int8 generator's output of the
    target's frames, gives `FaceRefiner.refine` the float result within about a grey level; a refiner with a
    neural texture stays float."""
    from dvp_hub.models.refiner import FaceRefiner
    from dvp_hub.pipelines.live_generator import int8_live_generator, int8_refiner

    _need_int8()
    torch.manual_seed(0)
    refiner = FaceRefiner(channels=8, num_blocks=2).eval()
    torch.nn.init.normal_(refiner.tail.weight, std=0.05)  # zero at init: give it some detail to add
    g8 = int8_live_generator(tiny_pipeline, tiny_pipeline.generator)
    window = (8, 8, 56, 48)
    residual = int8_refiner(tiny_pipeline, refiner, window, g8)
    assert residual is not None and int8_refiner(tiny_pipeline, refiner, window, g8) is residual  # cached
    crops = torch.cat([g8.clip(w[0].permute(1, 0, 2, 3), 3) for w in _windows(tiny_pipeline)])
    want = refiner.refine(crops, window)
    got = refiner.refine(crops, window, residual=residual)
    assert got.shape == want.shape == (len(crops), 3, 128, 128)
    detail = (want - torch.nn.functional.interpolate(crops, scale_factor=2, mode="bilinear")).abs().mean()
    err = (got - want).abs()
    assert float(detail) > 0.01 and float(err.mean()) < 0.1 * float(detail) and float(err.max()) < 0.05
    textured = FaceRefiner(channels=8, num_blocks=1, texture_size=16)
    assert int8_refiner(tiny_pipeline, textured, window, g8) is None


def test_space_warm_up_calibrates_the_reenact_tabs_generator_and_refiner(tiny_pipeline, monkeypatch):
    """The Space's start-up thread leaves the generator and the refiner quantized, so a visitor's Reenact (which asks
    for int8) finds both calibrated."""
    from dvp_hub import DeepVideoPortraitPipeline
    from dvp_hub.models.refiner import FaceRefiner
    from dvp_hub.space import app

    _need_int8()
    gen = copy.deepcopy(tiny_pipeline.generator)  # a model of its own: no calibration cached on it yet
    refiner = FaceRefiner(channels=8, num_blocks=1).eval()
    pipe = DeepVideoPortraitPipeline(generator=gen, target=tiny_pipeline.target, refiner=refiner)
    monkeypatch.setattr(app, "get_pipeline", lambda name: pipe)
    app._warm_up()
    assert getattr(gen, "_dvp_int8", (None, None))[1] is not None
    assert getattr(pipe.refiner, "_dvp_int8", (None, None))[1] is not None


def test_calibrated_ranges_kept_on_disk_give_the_same_int8_models_without_calibrating(
    tiny_pipeline, monkeypatch, tmp_path
):
    """A second process (here: fresh copies of the models) loads the generator's and the refiner's int8 ranges from
    the cache folder instead of calibrating, and gets the same outputs bit for bit; a damaged entry is calibrated
    again and rewritten; with ``DVP_INT8_CACHE=0`` nothing is read or written."""
    from dvp_hub.models import int8_cache
    from dvp_hub.models.refiner import FaceRefiner
    from dvp_hub.pipelines import live_generator
    from dvp_hub.pipelines.live_generator import int8_live_generator, int8_refiner

    _need_int8()
    torch.manual_seed(1)
    refiner = FaceRefiner(channels=8, num_blocks=1).eval()
    torch.nn.init.normal_(refiner.tail.weight, std=0.05)
    monkeypatch.setenv("DVP_CACHE", str(tmp_path))  # an empty folder
    window, gen, windows = (8, 8, 56, 48), tiny_pipeline.generator, _windows(tiny_pipeline)
    calibrations = []
    real = live_generator.calibration_windows
    monkeypatch.setattr(live_generator, "calibration_windows", lambda *a, **k: calibrations.append(1) or real(*a, **k))

    def run(pipe_gen, ref):
        g8 = int8_live_generator(tiny_pipeline, pipe_gen)
        residual = int8_refiner(tiny_pipeline, ref, window, g8)
        crops = torch.cat([g8.clip(w[0].permute(1, 0, 2, 3), 3) for w in windows])
        return crops, residual(crops[:, :, 8:48, 8:56]), g8.key

    cold = run(copy.deepcopy(gen), copy.deepcopy(refiner))
    entries = sorted(os.listdir(int8_cache.cache_dir()))
    assert cold[2] is not None and f"{cold[2]}.safetensors" in entries and len(calibrations) == 2
    warm = run(copy.deepcopy(gen), copy.deepcopy(refiner))
    assert len(calibrations) == 2 and warm[2] == cold[2]  # no calibration: both read from the folder
    assert torch.equal(warm[0], cold[0]) and torch.equal(warm[1], cold[1])
    with open(os.path.join(int8_cache.cache_dir(), f"{cold[2]}.safetensors"), "wb") as f:
        f.write(b"not safetensors")  # damaged: calibrated again, the same model, the entry rewritten
    again = run(copy.deepcopy(gen), copy.deepcopy(refiner))  # the refiner's entry was read: 2 -> 3
    assert len(calibrations) == 3 and torch.equal(again[0], cold[0]) and torch.equal(again[1], cold[1])
    kept = int8_cache.load(cold[2])
    assert kept is not None
    int8_cache.save(cold[2], {k: torch.zeros(3) for k in kept})  # the right names, the wrong shapes: calibrated again
    again = run(copy.deepcopy(gen), copy.deepcopy(refiner))
    assert len(calibrations) == 4 and torch.equal(again[0], cold[0]) and again[2] == cold[2]
    assert all(v.shape == kept[k].shape for k, v in int8_cache.load(cold[2]).items())
    monkeypatch.setenv("DVP_INT8_CACHE", "0")
    other = copy.deepcopy(gen)
    with torch.no_grad():
        other.downs[0].conv.weight.mul_(0.5)  # other weights: another entry, were it written
    run(other, copy.deepcopy(refiner))
    assert sorted(os.listdir(int8_cache.cache_dir())) == entries


def test_a_chunk_quantized_once_gives_each_clip_as_quantizing_it_alone():
    _need_int8()
    from dvp_hub.models.int8 import Int8WindowGenerator

    cond = (torch.rand(30, 32, 32, 9) * 2 - 1).to(torch.bfloat16).permute(0, 3, 1, 2)  # channels last, as rendered
    whole = Int8WindowGenerator.quantize(cond)
    for part in (slice(0, 18), slice(8, 26), slice(16, 30)):
        assert torch.equal(whole[part].int_repr(), Int8WindowGenerator.quantize(cond[part]).int_repr())
