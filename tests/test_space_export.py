"""`dvp space-export`: a Space folder that installs from itself and serves the app."""

import os
import subprocess
import sys
import sysconfig
import time
import urllib.request

import pytest

from dvp_hub.space_export import export_space

from .test_space import _free_port


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export") / "space"
    r = subprocess.run(
        [sys.executable, "-m", "dvp_hub.cli", "space-export", str(folder), "--demo-model", "someone/dvp-obama-34s"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    return folder


def test_folder_has_what_hugging_face_builds_a_space_from(exported):
    from huggingface_hub import SpaceCard

    assert sorted(os.listdir(exported)) == ["README.md", "app.py", "packages.txt", "requirements.txt", "wheels"]
    card = SpaceCard.load(exported / "README.md")
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py"
    assert card.data.models == ["someone/dvp-obama-34s"]
    assert (exported / "packages.txt").read_text().split() == ["libgl1", "libglib2.0-0", "g++"]
    (wheel,) = os.listdir(exported / "wheels")
    assert wheel == "dvp_hub-0.1.0-py3-none-any.whl"
    assert f"./wheels/{wheel}" in (exported / "requirements.txt").read_text().splitlines()
    app = (exported / "app.py").read_text()
    assert app == open(os.path.join(os.path.dirname(__file__), "..", "spaces", "app.py")).read()


def test_refuses_a_folder_that_is_not_empty(tmp_path):
    from dvp_hub.errors import DVPError

    (tmp_path / "x").write_text("keep me")
    with pytest.raises(DVPError, match="not an empty folder"):
        export_space(str(tmp_path))
    assert os.listdir(tmp_path) == ["x"]


def test_push_uploads_the_folder_as_a_space_and_the_demo_target(exported, monkeypatch):
    import huggingface_hub

    import dvp_hub.pipelines.pipeline_dvp as pp
    from dvp_hub.space_export import push_space

    calls = []
    monkeypatch.setattr(huggingface_hub, "create_repo", lambda *a, **k: calls.append(("create", a, k)))
    monkeypatch.setattr(huggingface_hub, "upload_folder", lambda **k: calls.append(("upload", k)))
    monkeypatch.setattr(
        pp.DeepVideoPortraitPipeline, "push_to_hub", lambda self, repo, **k: calls.append(("model", repo))
    )
    push_space(str(exported), "someone/dvp-space", demo_model="someone/dvp-obama-34s")
    assert calls[0] == ("model", "someone/dvp-obama-34s")
    create = calls[1]
    assert (
        create[1] == ("someone/dvp-space",)
        and create[2]["repo_type"] == "space"
        and create[2]["space_sdk"] == "gradio"
    )
    upload = calls[2][1]
    assert upload["repo_type"] == "space" and upload["folder_path"] == str(exported)


def test_installs_from_its_own_requirements_offline_and_the_page_answers(exported, tmp_path):
    """A fresh venv; the third-party dependencies come from this environment's site-packages (no network),
    dvp-hub itself only from the folder's wheel, installed by `pip install -r requirements.txt`."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # this environment's packages, but not its editable dvp_hub (an import path, not a site dir: .pth unread)
    with open(os.path.join(site, "deps.pth"), "w") as fh:
        fh.write(sysconfig.get_paths()["purelib"] + "\n")
    # Python 3.11's venv seeds an old setuptools that would shadow the one torch needs
    subprocess.run([py, "-m", "pip", "uninstall", "-y", "-q", "setuptools"], capture_output=True)
    r = subprocess.run(
        [py, "-m", "pip", "install", "--no-index", "-q", "-r", "requirements.txt"],
        cwd=exported,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    where = subprocess.run(
        [py, "-c", "import dvp_hub; print(dvp_hub.__file__)"], capture_output=True, text=True, cwd=tmp_path
    )
    assert where.stdout.startswith(site), where  # dvp_hub from the wheel, not from the checkout
    port = _free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([py, "app.py"], cwd=exported, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        page = None
        for _ in range(240):
            if proc.poll() is not None:
                break
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert page is not None, proc.stdout.read().decode()[-2000:] if proc.poll() is not None else "no answer"
        assert "Deep Video Portraits" in page
        config = urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5).read().decode()
        assert "Reenact" in config
    finally:
        proc.terminate()
        proc.wait(timeout=30)
