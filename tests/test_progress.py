"""Progress off a terminal: plain lines through the ``saliency`` logger, never a tqdm ``\\r`` frame,
in the helper and in a real stage's output and ``log.txt``."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tqdm import tqdm

from saliency.progress import EVERY_SECONDS, LogProgress, progress

REPO = Path(__file__).resolve().parents[1]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "saliency"]


def test_off_a_terminal_it_logs_plain_lines_and_writes_nothing_itself(caplog: pytest.LogCaptureFixture,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = io.StringIO()  # not a TTY, like a log file or CI
    monkeypatch.setattr(sys, "stderr", stderr)
    caplog.set_level(logging.INFO, logger="saliency")
    bar = progress(range(50), desc="decoding", unit="img")
    assert isinstance(bar, LogProgress)
    assert list(bar) == list(range(50))
    assert stderr.getvalue() == ""
    assert lines(caplog) and all("\r" not in line for line in lines(caplog))
    assert re.fullmatch(r"decoding: done, 50/50 img in \d+\.\d s.*", lines(caplog)[-1])


def test_on_a_terminal_it_is_a_tqdm_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", Terminal())
    with progress(total=3, desc="work") as bar:
        assert isinstance(bar, tqdm)
        bar.update(3)
    assert "\r" in sys.stderr.getvalue()


def test_a_line_every_5_percent_at_most_every_2_seconds_and_a_last_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="saliency")
    clock = Clock()

    def slow() -> Iterator[int]:  # 1 s per item: a line per 5 items (5 %)
        for i in range(100):
            clock.now += 1
            yield i

    for _ in LogProgress(slow(), desc="train", total=100, clock=clock):
        pass
    logged = lines(caplog)
    assert len(logged) == 19 + 1  # 5, 10, ... 95 %, then the last line
    assert logged[0] == "train: 5/100 it (5%), 5.0 s elapsed, ~01:35 left, 1 it/s"
    assert logged[-1] == "train: done, 100/100 it in 01:40 (1 it/s)"
    caplog.clear()

    def fast() -> Iterator[int]:  # the whole loop in 1 s: only the last line
        for i in range(100):
            clock.now += 0.01
            yield i

    for _ in LogProgress(fast(), desc="eval", total=100, unit="img", clock=clock):
        pass
    assert lines(caplog) == ["eval: done, 100/100 img in 1.0 s (100 img/s)"]


def test_unknown_total_logs_a_heartbeat_and_postfix(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="saliency")
    clock = Clock()
    with LogProgress(desc="download", unit="B", unit_scale=True, clock=clock) as bar:
        for _ in range(10):
            clock.now += EVERY_SECONDS / 3
            bar.update(2_000_000)
            bar.set_postfix({"file": "x.pt"})
    logged = lines(caplog)
    assert len(logged) == 3 + 1
    assert logged[0] == "download: 6.00MB, 30.0 s elapsed, 200kB/s, file=x.pt"
    assert logged[-1] == "download: done, 20.0MB in 01:40 (200kB/s), file=x.pt"


def test_an_error_in_the_loop_says_where_it_stopped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="saliency")
    with pytest.raises(ValueError):
        for i in LogProgress(range(10), desc="eval", clock=Clock()):
            if i == 3:
                raise ValueError
    assert lines(caplog) == ["eval: stopped at 3/10 it in 0.0 s"]


def test_disabled_it_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="saliency")
    assert list(LogProgress(range(3), desc="rank 1", disable=True)) == [0, 1, 2]
    assert lines(caplog) == []


TOY = """\
run: {name: progress}
generator: {name: toyworld, options: {dim_z: 16, resolution: 16}}
discover: {reconstructor: lenet, steps: 4, batch_size: 8, lr: 0.001, checkpoint_every: 2, rca_samples: 16}
"""


def test_a_stage_redirected_to_a_file_logs_progress_lines_without_carriage_returns(tmp_path: Path) -> None:
    (tmp_path / "toy.yaml").write_text(TOY)
    output = tmp_path / "output.txt"
    with open(output, "wb") as out:  # stdout and stderr into one file, as `saliency ... > log 2>&1`
        done = subprocess.run([sys.executable, "-m", "saliency", "discover", "--config", str(tmp_path / "toy.yaml"),
                               "--run", str(tmp_path / "run"), "--device", "cpu"], stdout=out, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    printed = output.read_text()
    assert done.returncode == 0, printed
    logged = (tmp_path / "run" / "discover" / "log.txt").read_text()
    for text in (printed, logged):
        assert "\r" not in text
        assert re.search(r"discover: done, 4/4 it in \d+\.\d s \([\d.]+ it/s\), loss=[\d.]+, rca=[\d.]+\n", text), text
