import json
import os

import numpy as np
import pytest
import torch

from dvp_hub import DeepVideoPortraitPipeline
from dvp_hub.errors import InputError, TargetLoadError
from dvp_hub.geometry import euler_to_matrix, matrix_to_euler
from dvp_hub.motion import retarget
from dvp_hub.video import current_umask, probe_video, read_metadata

from .conftest import clip


def test_save_load_round_trip_fp32_and_fp16(tiny_pipeline, d3_sequence, tmp_path):
    _, seq = d3_sequence
    tiny_pipeline.save_pretrained(tmp_path / "t")
    files = {p.relative_to(tmp_path / "t").as_posix() for p in (tmp_path / "t").rglob("*") if p.is_file()}
    assert {
        "model_index.json",
        "generator/diffusion_pytorch_model.safetensors",
        "generator/diffusion_pytorch_model.fp16.safetensors",
        "target/config.json",
    } <= files
    modes = {oct(p.stat().st_mode & 0o777) for p in (tmp_path / "t").rglob("*") if p.is_file()}
    assert modes == {oct(0o666 & ~current_umask())}  # readable by whoever the user's umask lets read (not 0600 weights)
    index = json.loads((tmp_path / "t" / "model_index.json").read_text())
    assert index["generator"] == ["dvp_hub.models", "RenderingToVideoGenerator"]
    back = DeepVideoPortraitPipeline.from_pretrained(str(tmp_path / "t"))
    a = tiny_pipeline(source_parameters=seq.slice(0, 6), progress=False, watermark=False).frames
    b = back(source_parameters=seq.slice(0, 6), progress=False, watermark=False).frames
    assert a.shape == (1, 6, 64, 64, 3) and np.abs(a - b).max() == 0
    tup = back(source_parameters=seq.slice(0, 6), progress=False, watermark=False, return_dict=False)
    assert np.array_equal(tup[0], b) and tup[1] == pytest.approx(seq.fps)
    half = DeepVideoPortraitPipeline.from_pretrained(str(tmp_path / "t"), variant="fp16", dtype=torch.float16)
    assert half.generator.dtype == torch.float16 and half.target.dtype == torch.float32
    w32 = back.generator.state_dict()
    w16 = half.generator.state_dict()
    assert all(torch.allclose(w32[k].half().float(), w16[k].float()) for k in w32 if w32[k].is_floating_point())
    back.save_pretrained(tmp_path / "again")  # loaded from a local folder: no config names it
    configs = [p for p in (tmp_path / "again").rglob("*.json") if p.name in ("config.json", "model_index.json")]
    assert len(configs) >= 3 and not any("_name_or_path" in p.read_text() for p in configs)


def test_output_types(tiny_pipeline, d3_sequence):
    _, seq = d3_sequence
    pt = tiny_pipeline(source_parameters=seq.slice(0, 4), output_type="pt", progress=False).frames
    assert pt.shape == (1, 4, 3, 64, 64) and 0 <= pt.min() and pt.max() <= 1
    pil = tiny_pipeline(source_parameters=seq.slice(0, 4), output_type="pil", progress=False).frames
    assert len(pil[0]) == 4 and pil[0][0].size == (64, 64)


def test_streamed_chunks_equal_one_pass_over_the_whole_clip(tiny_pipeline, d3_sequence):
    """Chunks smaller than the window, rendered history carried over, overlap threads: same frames as rendering
    every frame at once and stacking each window by hand."""
    from dvp_hub import RenderingToVideoGenerator
    from dvp_hub.models.inference import generate
    from dvp_hub.render.conditioning import ConditioningRenderer

    _, seq = d3_sequence
    torch.manual_seed(1)
    gen = RenderingToVideoGenerator(base_channels=4, max_channels=8, resolution=64, temporal_window=5).eval()
    pipe = DeepVideoPortraitPipeline(generator=gen, target=tiny_pipeline.target)
    kw = dict(
        source_parameters=seq.slice(0, 23),
        watermark=False,
        invisible_watermark=False,  # exact comparison: the frames as generated
        progress=False,
        output_type="pt",
        fast=False,
    )
    out = pipe(chunk_size=3, batch_size=2, overlap=False, **kw)
    cond = ConditioningRenderer().render(out.parameters, pipe.target.crop, 64, albedo=pipe.target.to_sequence().albedo)
    stacks = torch.stack([torch.cat([cond[max(0, t - 4 + k)] for k in range(5)]) for t in range(23)])
    ref = ((generate(gen, stacks, fast=False) + 1) * 127.5).round().clamp(0, 255) / 255
    # The same computation in other batch sizes: float sums in another order can move a value across a
    # rounding boundary, so at most a grey level, on a handful of pixels (2 of 282,624 here).
    for frames in (out.frames[0], pipe(chunk_size=3, batch_size=2, overlap=True, **kw).frames[0]):
        d = (frames - ref).abs()
        assert d.max() <= 1 / 255 + 1e-6 and (d > 0).float().mean() < 1e-4


def test_overlap_threads_report_errors_and_stop():
    from dvp_hub.pipelines.streaming import Worker, prefetch

    def items():
        yield 1
        raise RuntimeError("render failed")

    with pytest.raises(RuntimeError, match="render failed"):
        list(prefetch(items()))
    seen = []
    worker = Worker(lambda x: seen.append(1 / x))
    worker.put(1)
    worker.put(0)
    with pytest.raises(ZeroDivisionError):
        worker.close()
    assert seen == [1.0]


def test_the_finisher_is_prepared_beside_tracking_and_closed_if_it_fails(tiny_pipeline, monkeypatch, tmp_path):
    """A video run starts `steps.prepare_finisher` in the background before tracking (`streaming.in_background`
    hands back its value or its error); when tracking fails, the run waits for it and closes what it made, and the
    tracking error is the one the caller sees, with nothing written."""
    from dvp_hub.pipelines import finish, steps
    from dvp_hub.pipelines.streaming import in_background

    assert in_background(lambda: 7)() == 7
    with pytest.raises(ZeroDivisionError):
        in_background(lambda: 1 / 0)()
    made, closed = [], []
    prepare = steps.prepare_finisher
    monkeypatch.setattr(steps, "prepare_finisher", lambda *a: made.append(prepare(*a)) or made[-1])
    monkeypatch.setattr(finish.FrameFinisher, "close", lambda self: closed.append(self))

    def tracking_fails(*args):
        raise InputError("no face in the source")

    monkeypatch.setattr(steps, "drive_motion", tracking_fails)
    out = tmp_path / "out.mp4"
    with pytest.raises(InputError, match="no face"):
        tiny_pipeline(source_video=clip("talking-d3.mp4"), output_video=str(out), max_frames=8, progress=False)
    assert len(made) == 1 and closed == [made[0][0]] and list(tmp_path.iterdir()) == []


def test_worker_threads_see_the_callers_context_cancel_and_leave_other_threads_counts():
    """Workers run in a copy of the caller's context (Gradio's progress reads it); `cancel` drops what is queued;
    a worker's own torch thread count neither changes the caller's nor the count a later thread starts with."""
    import contextvars
    import threading
    import time

    from dvp_hub.pipelines.streaming import Worker

    var = contextvars.ContextVar("var", default="unset")
    var.set("caller")
    seen, counts, started = [], [], threading.Event()

    def slow(x):
        seen.append((x, var.get()))
        counts.append(torch.get_num_threads())
        started.set()
        time.sleep(0.05)

    threads = torch.get_num_threads()
    worker = Worker(slow, depth=8, threads=1)
    for i in range(6):
        worker.put(i)
    assert started.wait(10)
    worker.cancel()
    assert 1 <= len(seen) < 6 and seen[0] == (0, "caller") and set(counts) == {1}
    later = []
    t = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert torch.get_num_threads() == threads and later == [threads]
    with pytest.raises(RuntimeError, match="stopped"):
        worker.put(7)


def test_an_error_in_a_late_stage_reaches_the_caller_and_leaves_nothing(tiny_pipeline, d3_sequence, tmp_path):
    """The callback runs in the last of the overlapped stages: its error stops the run, the half-written video is
    removed, and the caller's torch thread count is back as it was."""
    _, seq = d3_sequence
    threads = torch.get_num_threads()
    calls = []

    def callback(index, frame, cond):
        calls.append(index)
        if index == 5:
            raise RuntimeError("viewer failed")

    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="viewer failed"):
        tiny_pipeline(source_parameters=seq.slice(0, 20), output_video=str(out), overlap=True, chunk_size=4,
                      batch_size=2, callback_on_frame=callback, progress=False)
    assert calls == list(range(6)) and not out.exists() and list(tmp_path.iterdir()) == []
    assert torch.get_num_threads() == threads


def test_relative_head_pose_on_known_rotations():
    src_rot = np.stack([euler_to_matrix(0, 0, 0), euler_to_matrix(15, 0, 0), euler_to_matrix(0, -10, 5)])
    tgt_ref = euler_to_matrix(-20, 5, 0)
    rel = src_rot @ src_rot[0].T
    out = rel @ tgt_ref
    assert np.allclose(out[0], tgt_ref)
    # a 15 degree yaw of the source becomes a 15 degree rotation of the target about the same camera axis
    delta = out[1] @ tgt_ref.T
    assert np.allclose(matrix_to_euler(delta), [15, 0, 0], atol=1e-6)


def test_reenact_uses_the_neutral_frame_and_target_identity(d3_sequence):
    _, seq = d3_sequence
    ref = retarget.neutral_frame(seq)
    out = retarget.reenact(seq, seq, target_ref=ref)
    assert out.info["source_reference_frame"] == ref
    # the source's median pose maps to the target's reference pose
    assert np.allclose(out.rotation[retarget.median_pose_frame(seq)], seq.rotation[ref], atol=1e-6)
    # self-reenactment anchored at the reference frame reproduces the pose and expression there
    out = retarget.reenact(seq, seq, target_ref=ref, source_pose_ref=ref)
    assert np.allclose(out.rotation[ref], seq.rotation[ref], atol=1e-6)
    assert np.allclose(out.expression, seq.expression, atol=1e-9)
    # a source whose first frame smiles: the reference is not frame 0 unless it is the most neutral
    smiling = seq.index(np.arange(len(seq)))
    smiling.expression = seq.expression.copy()
    smiling.expression[0] += 3 * np.abs(seq.expression).max(0)
    assert retarget.neutral_frame(smiling) != 0
    only_pose = retarget.reenact(seq, seq, target_ref=ref, transfer=("pose",))
    assert np.allclose(only_pose.expression, seq.expression[ref])


def test_a_closed_source_mouth_drives_a_closed_target_mouth(d3_sequence):
    """Expressions are transferred from closed-lip neutrals: neither the source's neutral frame nor the target's
    need have closed lips (talking-d3's first 48 frames have none), yet closed source mouths come out closed."""
    from dvp_hub.face import topology as topo
    from dvp_hub.face.model import load_face_model
    from dvp_hub.face.mouth import CLOSED_MOUTH, close_mouth

    _, seq = d3_sequence
    model = load_face_model()
    source = seq.index(np.arange(len(seq)))
    source.expression = seq.expression.copy()
    for i in range(30, 40):  # ten frames with their lips closed, the rest as tracked
        source.expression[i] = close_mouth(model, seq.identity, seq.expression[i])
    opening = topo.mouth_opening(model.shape(seq.identity, source.expression))
    assert opening[30:40].max() < CLOSED_MOUTH + 0.01 and np.delete(opening, range(30, 40)).min() > 0.07
    open_frame = int(np.argmax(opening))
    for out in (
        retarget.reenact(source, seq, target_ref=0, source_ref=0, target_neutral=open_frame),
        retarget.dub(source, seq, 40, source_ref=0, target_neutral=open_frame),
    ):
        driven = topo.mouth_opening(model.shape(seq.identity, out.expression))
        assert driven[30:40].max() < CLOSED_MOUTH + 0.02  # the target's neutral had an opening over 0.2
        assert np.corrcoef(driven, opening)[0, 1] > 0.9


def test_dub_length_audio_and_motion(tiny_pipeline, tmp_path):
    src = clip("speech-wda.mp4")
    out_path = tmp_path / "dub.mp4"
    out = tiny_pipeline(source_video=src, mode="dub", max_frames=60, output_video=str(out_path), progress=False)
    info = probe_video(out_path)
    assert info.num_frames == 60 and info.has_audio and info.fps == pytest.approx(25.0)
    assert "dvp_hub" in read_metadata(out_path)["comment"]
    # the target's own head motion, played forwards then backwards over its 40 training frames
    tgt = tiny_pipeline.target.to_sequence()
    assert np.allclose(out.parameters.rotation[:40], tgt.rotation[:40])
    assert np.allclose(out.parameters.rotation[40], tgt.rotation[38])
    assert list(retarget.pingpong(7, 3)) == [0, 1, 2, 1, 0, 1, 2]


def test_edit_changes_the_image_as_asked():
    pipe = DeepVideoPortraitPipeline.from_pretrained("demo")
    full = pipe.edit(100, watermark=False)  # the demo carries its full frame: the edit is pasted back
    assert full.shape == (720, 1280, 3) and full.dtype == np.uint8
    size = 256 * (pipe.refiner.config.scale if pipe.refiner is not None else 1)
    base = pipe.edit(100, watermark=False, paste_back=False)
    assert base.shape == (size, size, 3) and base.dtype == np.uint8
    assert np.array_equal(base, pipe.edit(100, watermark=False, paste_back=False))
    turned = pipe.edit(100, yaw=20, watermark=False, paste_back=False)
    assert np.abs(turned.astype(int) - base).mean() > 2.0
    # closing the eyes changes the eye region, not the hair at the top of the crop
    blink = pipe.edit(100, expression={"blink": 3.0}, watermark=False, paste_back=False).astype(int)
    m = pipe.target.crop.matrix(size)
    x, y = m[:, :2] @ pipe.target.landmarks[100, 159].numpy() + m[:, 2]  # upper lid of the right eye, in the crop
    box = (slice(int(y) - 6, int(y) + 6), slice(int(x) - 10, int(x) + 10))
    eye_change = np.abs(blink[box] - base[box]).mean()
    assert eye_change > 8
    assert np.abs(blink[:30] - base[:30]).mean() < eye_change / 2
    # the blink control reaches the most closed eyes of the footage, beyond the old fixed +-2 of the slider
    ranges = pipe.edit_ranges(100)
    assert set(ranges) == {"yaw", "pitch", "roll", "jaw_open", "smile", "brows", "blink"}
    assert all(lo <= 0 <= hi for lo, hi in ranges.values()) and ranges["blink"][1] > 3
    closed = pipe.edit(100, expression={"blink": ranges["blink"][1]}, watermark=False, paste_back=False).astype(int)
    assert np.abs(closed[box] - base[box]).mean() > eye_change
    with pytest.raises(InputError):
        pipe.edit(10, expression={"wiggle": 1})


def test_a_turned_head_moves_as_the_targets_own_head_moved():
    """Turning frame 100's head to frame 600's rotation puts the head near where frame 600 had it (the footage's
    neck pivot, `pose_coupling`), not where frame 100's head was: that is what keeps the collar whole."""
    from dvp_hub.geometry import axis_angle_to_matrix, matrix_to_euler
    from dvp_hub.motion.editing import edited_frame, pose_coupling

    pipe = DeepVideoPortraitPipeline.from_pretrained("demo")
    seq = pipe.target_state.sequence
    trained = slice(0, pipe.target.config.train_frames)
    rot = axis_angle_to_matrix(seq.rotation[[100, 600]])
    yaw, pitch, roll = matrix_to_euler((rot[1] @ rot[0].T)[None])[0]
    assert abs(yaw) > 15  # the two frames look about 20 degrees apart
    coupling = pose_coupling(seq, trained)
    turned = edited_frame(seq, 100, yaw, pitch, roll, {}, (0, 0), coupling=coupling)
    assert np.allclose(axis_angle_to_matrix(turned.rotation[0]), rot[1], atol=1e-6)
    in_place = edited_frame(seq, 100, yaw, pitch, roll, {}, (0, 0), coupling=np.zeros((3, 3)))
    real = seq.translation[600]
    assert np.linalg.norm(turned.translation[0] - real) < 0.3 * np.linalg.norm(in_place.translation[0] - real)


def test_visible_mark_on_by_default(tiny_pipeline, d3_sequence):
    _, seq = d3_sequence
    marked = tiny_pipeline(source_parameters=seq.slice(0, 2), progress=False).frames
    clean = tiny_pipeline(source_parameters=seq.slice(0, 2), progress=False, watermark=False).frames
    diff = np.abs(marked - clean).max(-1)[0, 0]
    assert diff[-12:, -40:].mean() > 0.05 and diff[:32, :32].max() == 0


def test_bad_inputs(tiny_pipeline, tmp_path):
    with pytest.raises(InputError):
        tiny_pipeline(progress=False)
    with pytest.raises(InputError):
        tiny_pipeline(source_parameters="x.safetensors", mode="sing", progress=False)
    with pytest.raises(InputError):
        tiny_pipeline(source_parameters="x.safetensors", transfer=("hair",), progress=False)


def _save(pipe, folder):
    pipe.save_pretrained(folder)
    return folder


def test_hostile_and_missing_targets(tiny_pipeline, tmp_path):
    good = _save(tiny_pipeline, tmp_path / "good")
    with pytest.raises(TargetLoadError, match="not a target folder|Hub"):
        DeepVideoPortraitPipeline.from_pretrained(str(tmp_path / "missing"))
    pickled = _save(tiny_pipeline, tmp_path / "pickled")
    torch.save({}, pickled / "generator" / "pytorch_model.bin")
    with pytest.raises(TargetLoadError, match="pickled"):
        DeepVideoPortraitPipeline.from_pretrained(str(pickled))
    foreign = _save(tiny_pipeline, tmp_path / "foreign")
    idx = json.loads((foreign / "model_index.json").read_text())
    idx["generator"] = ["os", "system"]
    (foreign / "model_index.json").write_text(json.dumps(idx))
    with pytest.raises(TargetLoadError, match="only dvp_hub classes"):
        DeepVideoPortraitPipeline.from_pretrained(str(foreign))
    with pytest.raises(TargetLoadError):
        DeepVideoPortraitPipeline.from_pretrained("../../etc")
    absurd = _save(tiny_pipeline, tmp_path / "absurd")
    cfg = json.loads((absurd / "generator" / "config.json").read_text())
    cfg["base_channels"] = 10**7
    (absurd / "generator" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(TargetLoadError, match="base_channels"):
        DeepVideoPortraitPipeline.from_pretrained(str(absurd))
    truncated = _save(tiny_pipeline, tmp_path / "truncated")
    w = truncated / "generator" / "diffusion_pytorch_model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(TargetLoadError, match="cannot load"):
        DeepVideoPortraitPipeline.from_pretrained(str(truncated))
    assert DeepVideoPortraitPipeline.from_pretrained(str(good)).target.config.name == "tiny"


def test_offline_cache_and_uncached_id(tiny_pipeline, tmp_path, monkeypatch):
    """A repo in the HF cache loads offline by id; an uncached id says what to do."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    snap = cache / "models--someone--tiny" / "snapshots" / ("a" * 40)
    tiny_pipeline.save_pretrained(snap)
    (cache / "models--someone--tiny" / "refs").mkdir(parents=True)
    (cache / "models--someone--tiny" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    pipe = DeepVideoPortraitPipeline.from_pretrained("someone/tiny", cache_dir=str(cache))
    assert pipe.target.config.name == "tiny"
    with pytest.raises(TargetLoadError, match="offline|cache"):
        DeepVideoPortraitPipeline.from_pretrained("someone/absent", cache_dir=str(cache))


def test_push_to_hub_uploads_both_weight_sets(tiny_pipeline, monkeypatch):
    import huggingface_hub

    calls = {}

    def fake_create_repo(repo_id, **kw):
        calls["create"] = repo_id

    def fake_upload_folder(repo_id, folder_path, **kw):
        calls["files"] = sorted(
            os.path.relpath(os.path.join(r, f), folder_path) for r, _, fs in os.walk(folder_path) for f in fs
        )

    monkeypatch.setattr(huggingface_hub, "create_repo", fake_create_repo)
    monkeypatch.setattr(huggingface_hub, "upload_folder", fake_upload_folder)
    tiny_pipeline.push_to_hub("me/tiny-target")
    assert calls["create"] == "me/tiny-target"
    assert "generator/diffusion_pytorch_model.safetensors" in calls["files"]
    assert "generator/diffusion_pytorch_model.fp16.safetensors" in calls["files"]


def test_demo_target_resolves_and_runs():
    pipe = DeepVideoPortraitPipeline.from_pretrained("demo")
    assert pipe.generator.dtype == torch.float32 and pipe.target.config.resolution == 256
    from dvp_hub.cli import MOTION_CLIP

    out = pipe(source_parameters=MOTION_CLIP, max_frames=3, progress=False)
    assert out.frames.shape == (1, 3, 720, 1280, 3)  # the target's full frame at its native size, by default
    crop = pipe(source_parameters=MOTION_CLIP, max_frames=3, progress=False, paste_back=False).frames
    size = 256 * (pipe.refiner.config.scale if pipe.refiner is not None else 1)
    assert crop.shape == (1, 3, size, size, 3)
    # a trained generator makes a face-like image: not flat
    assert crop[0, 0].std() > 0.1


def test_paste_back_into_the_full_frame(d3_sequence, tmp_path):
    from dvp_hub import PortraitTarget, RenderingToVideoGenerator
    from dvp_hub.render.crop import Crop
    from dvp_hub.video import VideoReader, write_video

    _, seq = d3_sequence
    gen = RenderingToVideoGenerator(base_channels=4, max_channels=8, resolution=64, temporal_window=3).eval()
    target = PortraitTarget.from_sequence(seq, Crop(128.0, 96.0, 256.0), 64, train_frames=40, name="paste")
    folder = tmp_path / "t"
    DeepVideoPortraitPipeline(generator=gen, target=target).save_pretrained(folder)
    write_video(VideoReader(clip("talking-d3.mp4"), max_frames=48), folder / "reference.mp4", 30, synthetic=False)
    pipe = DeepVideoPortraitPipeline.from_pretrained(str(folder))
    out = pipe(source_parameters=seq.slice(0, 3), progress=False, watermark=False, invisible_watermark=False).frames[0]
    assert out.shape == (3, 512, 512, 3)
    ref_frame = (
        list(VideoReader(folder / "reference.mp4"))[pipe.target.config.reference_frame].astype(np.float32) / 255
    )
    assert np.abs(out[0, :80, :80] - ref_frame[:80, :80]).max() < 1e-6  # outside the crop: the target's frame
    assert np.abs(out[0, 200:280, 220:300] - ref_frame[200:280, 220:300]).mean() > 0.05  # inside: generated
    crop_only = pipe(source_parameters=seq.slice(0, 3), progress=False, paste_back=False).frames[0]
    assert crop_only.shape == (3, 64, 64, 3)
