"""Loading a target by Hub id from a real Hub-compatible server (olah on 127.0.0.1, serving a local git repo)."""

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("olah")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def olah_server(tiny_pipeline, tmp_path):
    repo = tmp_path / "mirrors" / "models" / "someone" / "tiny-target"
    tiny_pipeline.save_pretrained(repo)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "target"], check=True)
    port = _free_port()
    cfg = tmp_path / "olah.toml"
    cfg.write_text(
        f'[basic]\nhost = "127.0.0.1"\nport = {port}\nrepos-path = "{tmp_path / "repos"}"\n'
        f'mirror-netloc = "127.0.0.1:{port}"\nmirror-lfs-netloc = "127.0.0.1:{port}"\n'
        f'mirrors-path = ["{tmp_path / "mirrors"}"]\n\n[accessibility]\noffline = true\n'
    )
    olah = shutil.which("olah-cli") or os.path.join(os.path.dirname(sys.executable), "olah-cli")
    proc = subprocess.Popen([olah, "-c", str(cfg)], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=20)


def test_from_pretrained_by_hub_id(olah_server, tmp_path):
    code = (
        "from dvp_hub import DeepVideoPortraitPipeline\n"
        "p = DeepVideoPortraitPipeline.from_pretrained('someone/tiny-target', cache_dir=%r)\n"
        "print('LOADED', p.target.config.name, p.generator.config.base_channels)\n"
        "p = DeepVideoPortraitPipeline.from_pretrained('someone/tiny-target', cache_dir=%r, variant='fp16')\n"
        "print('FP16', p.generator.config.base_channels)\n"
    ) % (str(tmp_path / "cache"), str(tmp_path / "cache"))
    env = {**os.environ, "HF_ENDPOINT": olah_server, "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "LOADED tiny 4" in r.stdout and "FP16 4" in r.stdout
    # now offline: the same id loads from the cache, an unknown one says what to do
    env["HF_HUB_OFFLINE"] = "1"
    r = subprocess.run(
        [sys.executable, "-c", code.split("p = Deep")[0] + "p = Deep" + code.split("p = Deep")[1]],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0 and "LOADED tiny 4" in r.stdout, r.stderr[-2000:]
