"""scripts/gpu_bundle.py's working-tree side: what travels, make-room and restore (in a throwaway git repository)."""

import importlib.util
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bundle(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_bundle", ROOT / "scripts" / "gpu_bundle.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    repo = tmp_path / "repo"
    (repo / "model_cards").mkdir(parents=True)
    (repo / "code.py").write_bytes(b"x" * 1000)
    for name in ("a.png", "b.png", "c.png"):
        (repo / "model_cards" / name).write_bytes(b"p" * 4000)
    (repo / ".gitignore").write_text("/.gpu/\n/.gpu.removed\n")
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    (repo / ".gpu").mkdir()
    (repo / ".gpu" / "clip.mp4").write_bytes(b"c" * 3000)
    monkeypatch.setattr(mod, "ROOT", str(repo))
    monkeypatch.setattr(mod, "BUNDLE", str(repo / ".gpu"))
    monkeypatch.setattr(mod, "REMOVED", str(repo / ".gpu.removed"))
    return mod, repo


def test_make_room_deletes_unmodified_pictures_until_it_fits_and_restore_brings_them_back(bundle, monkeypatch):
    mod, repo = bundle
    total, per = mod.travelling_bytes()
    assert total == 1000 + 3 * 4000 + 3000 + len("/.gpu/\n/.gpu.removed\n") and per[".gpu"] == 3000
    (repo / "model_cards" / "a.png").write_bytes(b"edited" * 10)  # an uncommitted edit is never deleted
    monkeypatch.setattr(mod, "LIMIT", total - 7000 + mod.HEADROOM)
    assert mod.cmd_make_room(None) == 0
    left = sorted(p.name for p in (repo / "model_cards").iterdir())
    assert "a.png" in left and len(left) == 2  # one unmodified picture was enough
    assert (repo / ".gpu.removed").read_text().count("\n") == 1
    assert mod.cmd_restore(None) == 0
    assert sorted(p.name for p in (repo / "model_cards").iterdir()) == ["a.png", "b.png", "c.png"]
    assert (repo / "model_cards" / "a.png").read_bytes() == b"edited" * 10 and not (repo / ".gpu.removed").exists()


def test_size_names_the_largest_folders_when_over(bundle, monkeypatch, capsys):
    mod, _ = bundle
    monkeypatch.setattr(mod, "LIMIT", 100)
    assert mod.cmd_size() == 1
    out = capsys.readouterr().out
    assert "over the limit" in out and "model_cards" in out and ".gpu" in out
