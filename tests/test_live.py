"""Live reenactment: causal filter, the streaming session, dropping without queueing, recordings."""

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from dvp_hub.face.one_euro import OneEuroFilter
from dvp_hub.pipelines.live_runner import LiveRunner, Recording
from dvp_hub.video import VideoReader, probe_video

from .conftest import clip


def test_one_euro_smooths_a_still_signal_and_follows_a_fast_one():
    rng = np.random.default_rng(0)
    f = OneEuroFilter(min_cutoff=1.0, beta=0.5)
    still = [f(np.array([1.0]) + rng.normal(0, 0.05, 1), i / 30)[0] for i in range(90)]
    assert np.std(still[30:]) < 0.5 * 0.05  # jitter halved at least (2.9x here)
    f = OneEuroFilter(min_cutoff=1.0, beta=0.5)
    ramp = [f(np.array([i / 30 * 3.0]), i / 30)[0] for i in range(60)]  # 3 units/s
    assert abs(ramp[-1] - 59 / 30 * 3.0) < 3.0 / 30 * 1.5  # lags by under a frame and a half


def test_session_calibrates_then_follows_and_marks_every_frame(tiny_pipeline):
    frames = [f.copy() for f in VideoReader(clip("talking-d3.mp4"), max_frames=20)]
    session = tiny_pipeline.live(fps=30, calibration_seconds=0.2)  # 6 frames
    outs = [session.push(f) for f in frames]
    assert all(o.shape == (64, 64, 3) and o.dtype == np.uint8 for o in outs)
    assert not session.calibrating and len(session.fitted) == 20 - 6
    assert session.parameters().expression.shape == (14, 64)
    session.recalibrate()
    assert session.calibrating and session.parameters() is None  # the motion restarts with the new calibration
    for f in frames[:8]:
        session.push(f)
    assert not session.calibrating and len(session.parameters()) == 2


def test_live_fit_is_close_to_the_offline_fit(d3_sequence, tiny_pipeline):
    """Mouth opening of the causal per-frame fit against the offline fit of the same 48 frames."""
    from dvp_hub.face import topology as topo
    from dvp_hub.face.model import load_face_model

    _, offline = d3_sequence
    session = tiny_pipeline.live(fps=30, calibration_seconds=0.2)
    for f in VideoReader(clip("talking-d3.mp4"), max_frames=48):
        session.push(f)
    live = session.parameters()
    model = load_face_model()
    a = topo.mouth_opening(model.shape(offline.identity, offline.expression[6:]))
    b = topo.mouth_opening(model.shape(live.identity, live.expression))
    assert np.corrcoef(a, b)[0, 1] > 0.85


def test_live_and_offline_drive_the_target_alike(tiny_pipeline):
    """One clip through both paths (dub mode): after calibration, the target's mouth opening that drives the
    generator follows the offline path's frame by frame (r > 0.85, the same scale within 35%)."""
    from dvp_hub.face import topology as topo
    from dvp_hub.face.model import load_face_model

    frames = list(VideoReader(clip("talking-d3.mp4"), max_frames=48))
    offline = tiny_pipeline(source_video=clip("talking-d3.mp4"), max_frames=48, mode="dub", progress=False)
    session = tiny_pipeline.live(fps=30, calibration_seconds=0.2, mode="dub")
    live = []
    for f in frames:
        session.push(f)
        live.append(session.last_drive.expression[0])
    k = session.calibration_frames
    model, tgt = load_face_model(), tiny_pipeline.target_state.sequence
    a = topo.mouth_opening(model.shape(tgt.identity, offline.parameters.expression[k:]))
    b = topo.mouth_opening(model.shape(tgt.identity, np.stack(live[k:])))
    assert np.corrcoef(a, b)[0, 1] > 0.85
    assert 0.65 < np.ptp(b) / np.ptp(a) < 1.35


def test_live_runs_the_offline_retargeting_frame_by_frame(tiny_pipeline):
    """Both paths share one engine: the drives of a live session (reenact and dub) equal the batch functions'
    on the same fitted parameters with the calibration's reference as the source's anchor (to 1e-9; the limits
    off, since offline smooths their pulls both ways and live causally)."""
    from dvp_hub.geometry import axis_angle_to_matrix
    from dvp_hub.motion import retarget

    frames = list(VideoReader(clip("talking-d3.mp4"), max_frames=24))
    state, cfg = tiny_pipeline.target_state, tiny_pipeline.target.config
    for mode in ("reenact", "dub"):
        session = tiny_pipeline.live(
            fps=30, calibration_seconds=0.2, mode=mode, limit_pose=False, limit_expression=False
        )
        drives = []
        for f in frames:
            session.push(f)
            drives.append(session.last_drive)
        k, fitter = session.calibration_frames, session.fitter
        params = {key: np.stack([fitter.reference[key]] + [p[key] for p in session.fitted]) for key in fitter.reference}
        source = fitter.sequence(params, 30)  # frame 0: the calibration's reference
        if mode == "reenact":
            batch = retarget.reenact(
                source, state.sequence, cfg.reference_frame, 0, state.neutral_frame,
                target_neutral_expression=state.neutral_expression, source_pose_ref=0,
            ).slice(1)
        else:  # live's ping-pong counts every camera frame, calibration included
            batch = retarget.dub(
                source.index(np.r_[np.zeros(k, int), np.arange(1, len(source))]), state.sequence, cfg.train_frames,
                0, state.neutral_frame, state.neutral_expression,
            ).slice(k)
        live = drives[k:]
        assert len(live) == len(batch) == len(frames) - k
        for name in ("translation", "expression", "gaze", "sh", "landmarks"):
            np.testing.assert_allclose(np.concatenate([getattr(d, name) for d in live]), getattr(batch, name), atol=1e-9)
        live_rotation = axis_angle_to_matrix(np.concatenate([d.rotation for d in live]))
        np.testing.assert_allclose(live_rotation, axis_angle_to_matrix(batch.rotation), atol=1e-9)  # either form


def test_live_reference_has_closed_lips_though_calibration_catches_a_word():
    """speech-wda starts mid-word, so no frame of its first second has closed lips; the reference that live
    expressions are measured from has them anyway (else every closed mouth would be a negative opening and
    the target's lips would fold back open), and the fit's mouth then follows the offline fit's."""
    from dvp_hub.face import topology as topo
    from dvp_hub.face.fitting import fit_sequence
    from dvp_hub.face.live_fit import LiveFaceFitter
    from dvp_hub.face.model import load_face_model
    from dvp_hub.face.mouth import CLOSED_MOUTH
    from dvp_hub.face.tracker import track_video

    track = track_video(clip("speech-wda.mp4"), max_frames=100)
    model = load_face_model()
    offline = fit_sequence(track)
    src = topo.mouth_opening(model.shape(offline.identity, offline.expression))
    assert src[:25].min() > 0.06  # the calibration second: no closed mouth in it
    fitter = LiveFaceFitter(track.width, track.height, calibration_frames=25)
    live = [fitter.fit(track.landmarks[i], i / 25) for i in range(100)]
    ref = topo.mouth_opening(model.shape(fitter.identity, fitter.reference["expression"][None]))[0]
    assert ref < CLOSED_MOUTH + 0.01
    rel = np.stack([p["expression"] - fitter.reference["expression"] for p in live[25:]])  # what drives a target
    closed_src = src[25:] < 0.04
    assert closed_src.sum() >= 5  # the clip has closed mouths later
    mouth = topo.mouth_opening(model.shape(fitter.identity, fitter.reference["expression"] + rel))
    assert np.corrcoef(mouth, src[25:])[0, 1] > 0.9


class _SlowSession:
    def __init__(self, seconds):
        self.seconds, self.frames_without_face = seconds, 0
        self.threads = {}  # which thread warmed up / ran each stage

    def warm_up(self, stage):
        self.threads.setdefault(("warm", stage), set()).add(threading.current_thread().name)

    def _ran(self, stage):
        self.threads.setdefault(("run", stage), set()).add(threading.current_thread().name)

    def push(self, frame, t):
        self._ran("generate")
        time.sleep(self.seconds)
        return frame


class _ThreeStageSession(_SlowSession):
    """prepare, generate_crop and finish each take ``seconds`` (sleeping, so the three can overlap)."""

    def prepare(self, frame, t):
        self._ran("prepare")
        time.sleep(self.seconds)
        return frame

    def generate_crop(self, cond):
        self._ran("generate")
        time.sleep(self.seconds)
        return cond, None

    def finish(self, crop, _cond):
        self._ran("finish")
        time.sleep(self.seconds)
        return crop

    def push(self, frame, t):
        return self.finish(*self.generate_crop(self.prepare(frame, t)))


class _Writer:
    def __init__(self):
        self.frames = []

    def write(self, f, changed=None):
        self.frames.append(f)


def test_pipelined_runner_overlaps_the_stages_and_keeps_order_and_timeline():
    """Three 15 ms stages, frames every 25 ms: one stage after the other (45 ms) drops about half, side by side
    almost none; outputs in order, one recorded frame per input, torch's thread count given back."""
    import torch

    threads = torch.get_num_threads()
    results = {}
    for pipelined in (False, True):
        writer = _Writer()
        rec = Recording(writer)
        session = _ThreeStageSession(0.015)
        runner = LiveRunner(session, on_output=rec.add, pipelined=pipelined)
        for i in range(60):
            runner.offer(i, np.full((2, 2, 3), i, np.uint8), i * 0.025)
            time.sleep(0.025)
        runner.close()
        rec.finish(60)
        values = [int(f[0, 0, 0]) for f in writer.frames]
        assert len(values) == 60 and values == sorted(values) and values[-1] == 59
        results[pipelined] = runner.dropped
        # each stage ran in one thread, and that thread warmed the stage up before the first frame
        stages = ("prepare", "generate", "finish")
        for stage in stages:
            assert len(session.threads[("run", stage)]) == 1
        warmed = {"generate": "generate_crop"} if pipelined else {}  # pipelined, the finish thread warms its part
        for stage in stages if pipelined else ("generate",):
            assert session.threads[("run", stage)] <= session.threads[("warm", warmed.get(stage, stage))]
        if pipelined:  # each stage in a thread of its own
            assert len({next(iter(session.threads[("run", s)])) for s in stages}) == 3
    assert results[False] > 15 and results[True] <= 6, results
    assert torch.get_num_threads() == threads


def test_runner_drops_instead_of_queueing_and_the_recording_keeps_the_timeline():
    writer = _Writer()
    rec = Recording(writer)
    runner = LiveRunner(_SlowSession(0.03), on_output=rec.add)
    for i in range(60):  # offered at 100 fps to a 33 fps session
        runner.offer(i, np.full((2, 2, 3), i, np.uint8), i / 100)
        time.sleep(0.01)
    runner.close()
    rec.finish(60)
    assert runner.dropped > 20
    assert max(runner.latencies) < 0.03 * 3  # never more than the frame in work plus the one waiting
    assert len(writer.frames) == 60  # one output per input frame
    values = [int(f[0, 0, 0]) for f in writer.frames]
    assert values == sorted(values) and values[-1] == 59  # in order; dropped ones repeat the previous output


def test_dvp_live_prints_one_line_and_writes_a_labelled_recording(tiny_pipeline, tmp_path):
    folder = tmp_path / "tiny"
    tiny_pipeline.save_pretrained(str(folder))
    out, params = tmp_path / "live.mp4", tmp_path / "live.safetensors"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "dvp_hub.cli",
            "live",
            "--target",
            str(folder),
            "--source",
            clip("talking-d3.mp4"),
            "--output",
            str(out),
            "--params",
            str(params),
            "--max-frames",
            "45",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("frames in 45, out ") and "latency p50" in r.stdout and r.stdout.count("\n") == 1
    info = probe_video(out)
    assert info.num_frames == 45 and info.has_audio  # as long as what was filmed
    from dvp_hub.face.sequence import FaceSequence

    assert len(FaceSequence.load(params)) > 0
    from dvp_hub.provenance.credentials import read_credentials

    assert read_credentials(str(out))["valid"]


def _tiny_generator():
    import torch

    from dvp_hub import RenderingToVideoGenerator

    torch.manual_seed(1)
    gen = RenderingToVideoGenerator(base_channels=4, max_channels=8, resolution=64, temporal_window=3).eval()
    clip_ = torch.rand(3, 9, 64, 64) * 2 - 1
    return gen, clip_.contiguous(memory_format=torch.channels_last)


def test_compiled_generator_matches_the_eager_one():
    """The live path's generator compiled by inductor (weights frozen): the same frames within bf16 noise."""
    import shutil

    from dvp_hub.models.inference import compiled_rest, generate_windows

    if shutil.which("g++") is None and shutil.which("c++") is None:
        import pytest

        pytest.skip("no C++ compiler: inductor cannot compile here (install g++, as .ci/run does)")
    gen, clip_ = _tiny_generator()
    eager = generate_windows(gen, clip_)
    compiled = generate_windows(gen, clip_, compiled=True)
    assert compiled_rest(gen) is not None, "the compiled path fell back to eager"
    assert compiled.shape == eager.shape == (1, 3, 64, 64)
    assert (compiled - eager).abs().max() < 0.02  # bf16 either way, fused in another order


def test_compiled_generator_falls_back_to_eager_with_one_warning(monkeypatch, caplog):
    import torch

    from dvp_hub.models.inference import compiled_rest, generate_windows

    def broken(fn, **kw):
        def run(*a):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")

        return run

    monkeypatch.setattr(torch, "compile", broken)
    gen, clip_ = _tiny_generator()
    eager = generate_windows(gen, clip_)
    with caplog.at_level("WARNING", logger="dvp_hub"):
        out = generate_windows(gen, clip_, compiled=True)
        again = generate_windows(gen, clip_, compiled=True)
    assert torch.equal(out, eager) and torch.equal(again, eager)
    assert compiled_rest(gen) is None
    warnings = [r.getMessage() for r in caplog.records if r.name == "dvp_hub"]
    assert len(warnings) == 1 and "No working C++ compiler found" in warnings[0] and "more detail" not in warnings[0]
    monkeypatch.setenv("DVP_COMPILE", "0")
    assert compiled_rest(_tiny_generator()[0]) is None  # switched off: not even tried


def test_frames_are_prepared_with_one_blas_thread():
    """numpy's BLAS runs one thread while a live frame is prepared (its spinning workers stalled the generator),
    and gets its thread count back afterwards."""
    from threadpoolctl import threadpool_info

    from dvp_hub.perf import one_blas_thread as _one_blas_thread

    np.ones((64, 64)) @ np.ones((64, 64))  # BLAS loaded
    before = [(i["filepath"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]
    assert before, "numpy's BLAS was not found"
    with _one_blas_thread():
        assert all(i["num_threads"] == 1 for i in threadpool_info() if i["user_api"] == "blas")
    assert [(i["filepath"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"] == before


def test_dvp_live_says_so_when_no_frame_was_fitted(tiny_pipeline, tmp_path, monkeypatch, capsys):
    """A machine too slow for the clip's rate can drop every frame after calibration: the recording still comes
    out (the calibration frames), and the one line says that no parameter file was written."""
    from dvp_hub import cli
    from dvp_hub.pipelines import live, live_runner

    folder = tmp_path / "tiny"
    tiny_pipeline.save_pretrained(str(folder))

    def calibration_only(session, frames, fps, writer=None, realtime=True):
        frames = list(frames)
        for f in frames:
            writer.write(np.zeros((64, 64, 3), np.uint8))
        n = len(frames)
        return {
            "frames_in": n,
            "frames_out": n,
            "frames_dropped": 0,
            "dropped_fraction": 0.0,
            "fps": 30.0,
            "latency_p50_ms": 50.0,
            "latency_p95_ms": 60.0,
            "frames_recorded": n,
            "frames_without_face": 0,
        }

    monkeypatch.setattr(live_runner, "run_paced", calibration_only)
    monkeypatch.setattr(live.LiveSession, "parameters", lambda self: None)
    out, params = tmp_path / "live.mp4", tmp_path / "live.safetensors"
    argv = ["live", "--target", str(folder), "--source", clip("talking-d3.mp4"), "--output", str(out)]
    code = cli.main(argv + ["--params", str(params), "--max-frames", "12"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert printed.out.count("\n") == 1 and printed.out.rstrip().endswith("no parameter file")
    assert out.exists() and not params.exists()


def test_profile_times_every_stage_offline_and_live(tiny_pipeline):
    """`profile=True` offline and `start_profile()` live: each stage's calls, shares that add up, and each stage's
    CPU time (its thread's), which a block in one thread cannot spend faster than its wall time."""
    out = tiny_pipeline(source_video=clip("talking-d3.mp4"), max_frames=12, progress=False, profile=True)
    rows = {r["stage"]: r for r in out.stats["profile"]}
    assert {"track + fit", "retarget", "render", "generator", "marks"} <= set(rows)
    assert rows["marks"]["calls"] == 12 and abs(sum(r["share"] for r in rows.values()) - 1) < 0.01
    assert all(0 <= r["cpu_ms_per_frame"] <= r["ms_per_frame"] + 0.01 for r in rows.values())
    assert rows["generator"]["cpu_ms_per_frame"] > 0
    session = tiny_pipeline.live(fps=30, calibration_seconds=0.2)
    times = session.start_profile()
    for f in VideoReader(clip("talking-d3.mp4"), max_frames=10):
        session.push(f)
    live = {r["stage"]: r for r in times.rows()}
    assert [live[s]["calls"] for s in ("face mesh", "retarget", "render", "generator", "marks")] == [10] * 5
    assert live["fit"]["calls"] == 10 and "cpu ms/frame" in times.table().splitlines()[0]


def test_runner_served_by_the_caller_closes_without_serve_and_reports_the_first_error():
    """thread=False: `close` without `serve` processes what waits in the caller's thread instead of hanging; a stage
    that fails reports its own error, not the barrier the others were waiting at."""
    outs = []
    runner = LiveRunner(_ThreeStageSession(0.005), on_output=lambda i, f, t: outs.append(i), thread=False, pipelined=True)
    runner.offer(0, np.zeros((2, 2, 3), np.uint8), 0.0)
    runner.close()
    assert outs == [0]

    class _Broken(_ThreeStageSession):
        def warm_up(self, stage):
            if stage == "finish":
                raise RuntimeError("no paste-back here")

    with pytest.raises(RuntimeError, match="no paste-back"):
        LiveRunner(_Broken(0.005), pipelined=True)


def test_the_recording_tells_the_writer_what_changed():
    """A new output is written with the changed box (None where none is known) and a repeated one (a dropped input)
    with an empty box, so that the writer converts nothing of it again (`VideoWriter.write`)."""
    calls = []

    class BoxWriter:
        def write(self, frame, changed=None):
            calls.append((int(frame[0, 0, 0]), changed))

    rec = Recording(BoxWriter(), changed=(4, 6, 20, 30))
    for i in (1, 2, 5):  # input 0 dropped before the first output, 3 and 4 after the second
        rec.add(i, np.full((2, 2, 3), i, np.uint8))
    rec.finish(7)
    box, none = (4, 6, 20, 30), (0, 0, 0, 0)
    assert calls == [(1, box), (1, none), (2, box), (2, none), (2, none), (5, box), (5, none)]
    calls.clear()
    rec = Recording(BoxWriter())  # no box known: a new output is converted whole, a repeated one not at all
    for i in (0, 2):
        rec.add(i, np.full((2, 2, 3), i, np.uint8))
    assert calls == [(0, None), (0, none), (2, None)]
