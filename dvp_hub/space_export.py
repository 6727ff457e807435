"""`dvp space-export DIR [--push REPO_ID]`: a self-contained Hugging Face Space folder.

Hugging Face builds a Gradio Space from its repository: ``README.md`` (front matter: sdk, app file,
models), ``app.py``, ``requirements.txt`` (pip) and ``packages.txt`` (Debian packages, apt). The folder
written here holds all four plus the wheel of exactly this version of dvp-hub (``wheels/``, until the
package is on PyPI), so the Space runs the code and the bundled demo target that were exported.
``--push`` uploads it with ``upload_folder(repo_type="space")``.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile

from . import __version__
from .errors import DVPError
from .pipelines.target_folder import DEMO_DIR

APP = '''"""Hugging Face Space entry point: Deep Video Portraits in the browser (see dvp_hub/space/)."""

import os

from dvp_hub.space import build_demo, launch  # noqa: F401  (build_demo: for tests and `gradio app.py`)

if __name__ == "__main__":
    launch(
        host=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0" if os.environ.get("SPACE_ID") else "127.0.0.1"),
        port=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
    )
'''

BODY = """
# Deep Video Portraits

[dvp_hub](https://github.com/dvp-hub/dvp_hub)'s implementation of Deep Video Portraits (Kim et al.,
SIGGRAPH 2018): upload or record a source video, pick a target, and get the reenacted video with its
audio; or edit the target's head pose, expression and gaze frame by frame.

**Every output is synthetic** and labelled so: a visible mark on every frame and container metadata.
The bundled demo target (`{demo}`) and its model card come with the package; see the Targets tab.

This folder was written by `dvp space-export` (dvp-hub {version}); `wheels/` holds that exact version.
"""


def repo_root() -> str | None:
    """The checkout dvp_hub runs from (a folder with its pyproject.toml), or None for an installed wheel."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    pyproject = os.path.join(root, "pyproject.toml")
    if not os.path.isfile(pyproject):
        return None
    with open(pyproject, encoding="utf-8") as fh:
        return root if 'name = "dvp-hub"' in fh.read() else None


def build_wheel(dest: str) -> str:
    """Build this checkout's wheel into ``dest`` (offline: no build isolation); returns its path."""
    root = repo_root()
    if root is None:
        raise DVPError("space-export builds the wheel from a checkout of dvp_hub; run it there, or pass --wheel.")
    with tempfile.TemporaryDirectory() as src:  # a copy: building in place would leave build/ in the checkout
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if os.path.isfile(os.path.join(root, name)):
                shutil.copy(os.path.join(root, name), src)
        shutil.copytree(
            os.path.join(root, "dvp_hub"), os.path.join(src, "dvp_hub"), ignore=shutil.ignore_patterns("__pycache__")
        )
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                "-q",
                "-w",
                dest,
                src,
            ],
            capture_output=True,
            text=True,
        )
    wheels = glob.glob(os.path.join(dest, "dvp_hub-*.whl"))
    if proc.returncode or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no wheel was written"])[-1]
        raise DVPError(f"building the dvp-hub wheel failed ({last}); `pip install setuptools wheel` and retry.")
    return wheels[0]


def _torch_requirement() -> str:
    import torch  # lazy: torch takes seconds; dvp_hub.cli imports this module, export_space checks its folder first

    return f"torch=={torch.__version__.split('+')[0]}"


def demo_name() -> str:
    """The bundled demo target's name (``obama-34s``)."""
    from .models.target import PortraitTarget  # lazy: torch; dvp_hub.cli imports this module

    return PortraitTarget.load_config(os.path.join(DEMO_DIR, "target")).get("name", "demo")


def space_card(demo_model: str | None, version: str):
    """README.md of the Space: the front matter Hugging Face reads, then a short description."""
    import gradio  # lazy: gradio and the Hub's cards take seconds; dvp_hub.cli imports this module
    from huggingface_hub import SpaceCard, SpaceCardData  # lazy

    data = SpaceCardData(
        title="Deep Video Portraits",
        emoji="🎭",
        colorFrom="indigo",
        colorTo="pink",
        sdk="gradio",
        sdk_version=gradio.__version__,
        app_file="app.py",
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
        models=[demo_model] if demo_model else [],
        license="mit",
        suggested_hardware="cpu-upgrade",
        tags=["deep-video-portraits", "face-reenactment", "synthetic-media"],
    )
    return SpaceCard(f"---\n{data.to_yaml()}\n---\n" + BODY.format(demo=demo_model or demo_name(), version=version))


def export_space(out_dir: str, demo_model: str | None = None, wheel: str | None = None) -> dict:
    """Write the Space folder to ``out_dir`` (a new or empty folder); returns what was written.

    ``demo_model``: the Hub repo id where the demo target is published, listed under ``models:``.
    ``wheel``: an existing dvp-hub wheel to ship instead of building one from the checkout.
    """
    from .face.tracker import SYSTEM_LIBRARIES  # lazy: importing the tracker sets GLOG_* variables; the cli must not

    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        raise DVPError(f"{out_dir}: exists and is not an empty folder; give a new folder.")
    parent = os.path.dirname(out_dir)
    if not os.path.isdir(parent):
        raise DVPError(f"{out_dir}: the folder {parent} does not exist; create it first.")
    if wheel is not None and not (os.path.isfile(wheel) and os.path.basename(wheel).startswith("dvp_hub-")):
        raise DVPError(f"{wheel}: not a dvp-hub wheel file (dvp_hub-VERSION-py3-none-any.whl).")
    tmp = tempfile.mkdtemp(prefix=".space-", dir=parent)  # written whole, then moved into place
    try:
        os.makedirs(os.path.join(tmp, "wheels"))
        if wheel is None:
            with tempfile.TemporaryDirectory() as build:
                wheel_path = shutil.copy(build_wheel(build), os.path.join(tmp, "wheels"))
        else:
            wheel_path = shutil.copy(wheel, os.path.join(tmp, "wheels"))
        wheel_name = os.path.basename(wheel_path)
        with open(os.path.join(tmp, "app.py"), "w") as fh:
            fh.write(APP)
        with open(os.path.join(tmp, "requirements.txt"), "w") as fh:
            fh.write(
                "# CPU build of torch (the multi-GB CUDA one is not needed on CPU hardware)\n"
                "--extra-index-url https://download.pytorch.org/whl/cpu\n"
                f"{_torch_requirement()}\n"
                f"./wheels/{wheel_name}\n"
            )
        with open(os.path.join(tmp, "packages.txt"), "w") as fh:
            # mediapipe's OpenCV needs the libraries; g++ lets inductor compile the live generator (~25% faster)
            fh.write("\n".join([*SYSTEM_LIBRARIES.values(), "g++"]) + "\n")
        space_card(demo_model, __version__).save(os.path.join(tmp, "README.md"))
        os.chmod(tmp, 0o755)
        if os.path.isdir(out_dir):
            os.rmdir(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"folder": out_dir, "wheel": wheel_name, "files": sorted(os.listdir(out_dir))}


def push_space(folder: str, repo_id: str, demo_model: str | None = None, token=None, private=None) -> str:
    """Upload the exported folder as a Gradio Space; with ``demo_model``, publish the demo target there first
    (so that the Space's ``models:`` entry exists)."""
    from huggingface_hub import ModelCard, create_repo, upload_folder  # lazy: looked up at call time: tests patch it

    if demo_model:
        from .pipelines.pipeline_dvp import DeepVideoPortraitPipeline  # lazy: torch; dvp_hub.cli imports this module

        pipe = DeepVideoPortraitPipeline.from_pretrained("demo")
        pipe.push_to_hub(demo_model, token=token, model_card=ModelCard.load(os.path.join(DEMO_DIR, "README.md")))
    create_repo(repo_id, repo_type="space", space_sdk="gradio", token=token, private=private, exist_ok=True)
    upload_folder(
        repo_id=repo_id,
        repo_type="space",
        folder_path=folder,
        token=token,
        commit_message="Deep Video Portraits Space (dvp space-export)",
    )
    return repo_id
