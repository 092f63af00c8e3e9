"""The curl quick start in docs/durable-streams.md, run as written against the default
`switchboard dev` (authentication on) with the URL and key it printed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.devserver import ROOT, DevServerProcess, running

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("curl") is None, reason="the quick start uses curl"),
]
DOC = ROOT / "docs" / "durable-streams.md"


def quick_start() -> tuple[str, list[str]]:
    """The ```sh block under '## Quick start with curl' and the output block after it."""
    text = DOC.read_text()
    section = text.split("## Quick start with curl", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(\w*)\n(.*?)```", section, re.S)
    script = next(body for lang, body in blocks if lang == "sh")
    output = next(body for lang, body in blocks if lang == "")
    # The first line is the reader's own export (with a placeholder key): the test exports.
    lines = [line for line in script.splitlines() if not line.startswith("export ")]
    return "\n".join(lines), output.strip("\n").splitlines()


@pytest.fixture(scope="module")
def server() -> Iterator[DevServerProcess]:
    with running("--no-agent") as started:
        assert started.api_key
        yield started


def test_the_curl_quick_start_prints_what_the_doc_says(
    server: DevServerProcess, tmp_path: Path
) -> None:
    script, expected = quick_start()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60,
        cwd=tmp_path,
        env={**environ, "SWITCHBOARD_URL": server.http,
             "SWITCHBOARD_API_KEY": server.api_key or ""},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    got = done.stdout.strip("\n").splitlines()
    assert len(got) == len(expected), done.stdout
    for line, want in zip(got, expected, strict=True):
        # Offsets and cursors differ per run: the doc writes them as <epoch> and "…".
        pattern = re.escape(want).replace(re.escape("<epoch>"), "[0-9a-f]{16}")
        pattern = pattern.replace(re.escape("…"), "[^\"]+")
        assert re.fullmatch(pattern, line), (line, want)
    assert list(tmp_path.iterdir()) == [], "the snippet leaves no files behind"
