"""`dvp reenact` over many sources: one process, then two CPU processes under `accelerate launch`, killed and
started again."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from dvp_hub.video import VideoReader, probe_video, write_video

from .conftest import clip

CLIPS = ("talking-d3.mp4", "talking-d6.mp4", "talking-d9.mp4", "talking-d10.mp4")


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """The first second of four shared clips, and a list file naming them."""
    folder = tmp_path_factory.mktemp("sources")
    for name in CLIPS:
        write_video(VideoReader(clip(name), max_frames=30), folder / name, 30, synthetic=False)
    (folder / "list.txt").write_text("# four shared clips\n" + "\n".join(CLIPS) + "\n")
    return folder


@pytest.fixture(scope="module")
def target(tiny_pipeline, tmp_path_factory):
    folder = tmp_path_factory.mktemp("target") / "tiny"
    tiny_pipeline.save_pretrained(str(folder))
    return str(folder)


def _summary(folder):
    return {os.path.basename(r["source"]): r for r in json.loads((folder / "summary.json").read_text())}


def test_one_process_writes_each_output_once_and_records_a_bad_source(sources, target, tmp_path, capsys):
    from dvp_hub.cli import main

    no_face = tmp_path / "blank.mp4"
    write_video([np.full((96, 96, 3), 60, np.uint8)] * 10, no_face, 25, synthetic=False)
    out = tmp_path / "out"
    argv = ["reenact", "--target", target, "--source", str(sources / "list.txt"), "--source", str(no_face)]
    argv += ["--output", str(out), "--max-frames", "10"]
    assert main(argv) == 1  # a source without a face fails the run, after the others are written
    rows = _summary(out)
    assert [(rows[n]["status"], rows[n]["frames"]) for n in CLIPS] == [("done", 10)] * 4
    assert rows["blank.mp4"]["status"].startswith("failed: ") and "face" in rows["blank.mp4"]["status"]
    for name in CLIPS:
        info = probe_video(out / name)
        assert info.num_frames == 10
    assert (out / "summary.csv").read_text().splitlines()[0] == "source,output,frames,seconds,status"
    mtimes = {n: os.path.getmtime(out / n) for n in CLIPS}
    assert main(argv) == 1  # again: nothing is redone
    assert {n: os.path.getmtime(out / n) for n in CLIPS} == mtimes
    assert all(_summary(out)[n]["status"] == "skipped: already written" for n in CLIPS)
    assert "4 already there, 1 failed" in capsys.readouterr().out


def _finished(path) -> bool:
    return path.suffix == ".mp4" and not path.name.startswith(".tmp-")


def _launch(args):
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    cmd = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    cmd += ["--mixed_precision", "no", "--dynamo_backend", "no", "-m", "dvp_hub.cli", "reenact", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_split_the_sources_survive_a_kill_and_finish_on_restart(sources, target, tmp_path):
    out = tmp_path / "out"
    args = ["--target", target, "--source", str(sources / "*.mp4"), "--output", str(out), "--max-frames", "20"]
    run = _launch(args)
    t0 = time.time()
    while time.time() - t0 < 300 and not (out.is_dir() and any(_finished(p) for p in out.iterdir())):
        time.sleep(0.2)
    launcher = psutil.Process(run.pid)
    procs = [*launcher.children(recursive=True), launcher]  # the workers are not all in the launcher's group
    for proc in procs:
        try:
            proc.kill()  # every process of the run, mid-batch
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=30)
    run.wait()
    finished = sorted(p.name for p in out.iterdir() if _finished(p))
    if len(finished) == len(CLIPS):
        pytest.skip("the batch finished before it could be killed")
    assert finished and not (out / "summary.json").exists()
    for name in finished:
        assert probe_video(out / name).num_frames == 20  # whatever exists is complete
    before = {n: os.path.getmtime(out / n) for n in finished}
    again = _launch(args)
    stdout, stderr = again.communicate(timeout=600)
    assert again.returncode == 0, stderr[-3000:]
    rows = _summary(out)
    assert sorted(rows) == sorted(CLIPS)
    for name in CLIPS:
        assert probe_video(out / name).num_frames == 20
        expected = "skipped: already written" if name in finished else "done"
        assert rows[name]["status"] == expected, rows[name]
    assert {n: os.path.getmtime(out / n) for n in finished} == before  # written once
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no half-written file, no per-process part
    assert f"{len(CLIPS)} sources: {len(CLIPS) - len(finished)} written, {len(finished)} already there" in stdout


def test_sources_a_file_with_glob_characters_and_an_output_onto_its_source(tmp_path):
    from dvp_hub.errors import DVPError
    from dvp_hub.sources import expand_sources, is_batch, output_paths

    odd = tmp_path / "talk [1080p].mp4"
    odd.write_bytes(b"")
    assert not is_batch([str(odd)], "out.mp4")  # a file, not a pattern
    assert expand_sources([str(odd), str(odd)]) == [str(odd)]
    clip_in = tmp_path / "a.mp4"
    clip_in.write_bytes(b"")
    with pytest.raises(DVPError, match="would be its own output"):
        output_paths([str(clip_in)], str(tmp_path))
