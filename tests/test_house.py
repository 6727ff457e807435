"""The house rules and the docs a newcomer starts from (no model, no clip: a second or two)."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_module_over_400_lines_no_function_over_80_no_import_cycle():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_house.py")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_readme_is_a_page_with_a_picture_and_its_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert text.count("\n") <= 150
    links = re.findall(r"\]\(([^)#\s]+)\)", text)
    assert any(link.endswith((".png", ".gif", ".jpg", ".webp")) for link in links)
    missing = [link for link in links if not link.startswith("http") and not (ROOT / link).exists()]
    assert not missing, missing
    for doc in ("LICENSE", "CITATION.cff", "CHANGELOG.md", "BENCHMARKS.md"):
        assert (ROOT / doc).is_file(), doc
