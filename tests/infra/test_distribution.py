"""The installable distribution is the client side only: the SDK, the CLI and the dev server.

``app`` and ``chalicelib`` (the deployed service) stay in the repository, where Chalice
packages them and ``switchboard dev`` loads them from; a wheel that shipped them would put a
top-level ``app`` module on every user's path.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]
# Build outputs and caches never go into the copy the wheel is built from.
_SKIP = {"build", "dist", "node_modules", "test-artifacts", "__pycache__"}


def test_the_wheel_ships_only_the_switchboard_package(tmp_path: Path) -> None:
    # Built from a copy of the checkout (app.py and chalicelib included, so the check means
    # something): an in-tree build would write build/ and *.egg-info into the checkout.
    source = tmp_path / "source"
    source.mkdir()
    for entry in ROOT.iterdir():
        if entry.name.startswith(".") or entry.name in _SKIP or entry.name.endswith(".egg-info"):
            continue
        if entry.is_dir():
            shutil.copytree(entry, source / entry.name,
                            ignore=shutil.ignore_patterns(*_SKIP, "*.egg-info"))
        else:
            shutil.copy2(entry, source / entry.name)
    assert (source / "app.py").exists() and (source / "chalicelib").is_dir()

    out = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--quiet", "-w", str(out), str(source)],
        check=True, capture_output=True, text=True, timeout=120,
    )
    (wheel,) = out.glob("switchboard-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {name.split("/", 1)[0] for name in names}
    dist_info = {name for name in top if name.endswith(".dist-info")}
    assert len(dist_info) == 1, top
    assert top - dist_info == {"switchboard"}, f"unexpected top-level names: {sorted(top)}"
    # What the package is for is in it (the dev server loads the service from a checkout).
    assert {"switchboard/client/__init__.py", "switchboard/cli.py",
            "switchboard/dev/server.py"} <= set(names)
