"""The README's "Use a detector" section, run as written: its Python block and every command, in a
folder laid out as the README assumes (a quickstart run folder, photo.jpg, photos/)."""

from __future__ import annotations

import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import write_tiny_unet

README = Path(__file__).resolve().parents[1] / "README.md"


def section_blocks(language: str) -> list[str]:
    """The ``language`` code blocks of the README's "Use a detector" section."""
    text = README.read_text()
    section = text.split("## Use a detector\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def layout(tmp_path: Path, ecssd_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """runs/quickstart with a tiny U-Net in unet/, photo.jpg and photos/ of ECSSD."""
    write_tiny_unet(tmp_path / "runs" / "quickstart" / "unet" / "model.pt")
    shutil.copy(ecssd_root / "images" / "0501.jpg", tmp_path / "photo.jpg")
    (tmp_path / "photos").mkdir()
    for stem in ("0502", "0503"):
        shutil.copy(ecssd_root / "images" / f"{stem}.jpg", tmp_path / "photos")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_python_block_runs_as_written(layout: Path) -> None:
    (block,) = section_blocks("python")
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    photo = np.asarray(Image.open("photo.jpg").convert("RGB"))
    assert namespace["probability"].shape == photo.shape[:2]
    assert namespace["cutout"].shape == (*photo.shape[:2], 4)


def test_every_command_runs_as_written(layout: Path, run_cli) -> None:
    (block,) = section_blocks("bash")
    commands = [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]
    assert {command[1] for command in commands} == {"predict", "export", "serve"}
    for command in commands:
        if command[1] == "serve":
            serve(command)
            continue
        result = run_cli(*command[1:])
        assert result.code == 0, (command, result.err)
    assert sorted(p.name for p in (layout / "maps").glob("*.png")) == ["0502.png", "0503.png", "photo.png"]
    assert all(Image.open(p).mode == "RGBA" for p in (layout / "cutouts").glob("*.png"))
    assert {p.name for p in (layout / "runs" / "quickstart" / "unet").iterdir()} >= {"model.onnx", "model.torchscript.pt"}


def serve(command: list[str]) -> None:
    """Start the README's serve command (on a free port), see the page answer, stop it."""
    pytest.importorskip("flask", reason="the serve extra (flask, waitress) is part of the test extra")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "saliency", *command[1:], "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
                    assert answer.status == 200 and b"<html" in answer.read().lower()
                    break
            except OSError:
                assert server.poll() is None, server.communicate()[0]
                assert time.monotonic() < deadline, "saliency serve did not answer within a minute"
                time.sleep(0.3)
    finally:
        server.terminate()
        server.wait(timeout=30)
