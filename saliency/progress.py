"""Progress of long loops: a tqdm bar on a terminal, plain log lines anywhere else.

On a terminal (stderr is a TTY) :func:`progress` returns a tqdm bar. Anywhere else (a log file, CI,
``nohup``, a pipe into ``tee``) a bar's ``\\r`` frames would turn the log into one huge line of
refreshes, so it returns a :class:`LogProgress` with the interface the callers use (iteration,
``update``, ``n``, ``set_postfix``, ``set_postfix_str``, ``close``, ``with``) that writes plain lines
through the ``saliency`` logger, at INFO, so they reach stderr and the run folder's ``log.txt`` alike:

- a line once another :data:`EVERY_PERCENT` (5 %) of the total is done, but no sooner than
  :data:`MIN_SECONDS` (2 s) after the previous line, so a loop of a few seconds logs only its last line;
- a line once :data:`EVERY_SECONDS` (30 s) have passed since the previous one, the heartbeat of slow
  steps (and the only periodic line when the total is unknown);
- a last line when the loop ends or the bar is closed: the count, the time and the rate.

Lines are written only when the loop updates the count (no thread), e.g.
``train-unet: 1200/15000 it (8%), 02:04 elapsed, ~23:47 left, 9.68 it/s, loss=0.2315``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Generic, TypeVar, Union, overload

from tqdm import tqdm

log = logging.getLogger("saliency")

EVERY_PERCENT = 5.0
MIN_SECONDS = 2.0
EVERY_SECONDS = 30.0

T = TypeVar("T")


class LogProgress(Generic[T]):
    """tqdm's interface, as plain log lines (see the module's docstring for when a line is written);
    ``clock`` (seconds, monotonic) is there for tests."""

    def __init__(self, iterable: Iterable[T] | None = None, *, desc: str, total: float | None = None, unit: str = "it",
                 unit_scale: bool = False, initial: float = 0, disable: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]  # checked just above
        self.iterable, self.desc, self.total, self.unit, self.unit_scale = iterable, desc, total, unit, unit_scale
        self.n: float = initial
        self.initial, self.disable, self.clock = initial, disable, clock
        self.postfix = ""
        self.start = self.last_time = clock()
        self.last_n = initial
        self.closed = False

    def __iter__(self) -> Iterator[T]:
        if self.iterable is None:
            raise TypeError("progress(): no iterable to iterate over (pass one, or call update())")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
            self._end(complete=True)
        finally:
            self._end(complete=False)  # a break or an error in the loop (nothing when complete)

    def __enter__(self) -> LogProgress[T]:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self._end(complete=kind is None and self._reached())

    def update(self, n: float | None = 1) -> None:
        self.n += n or 0
        if self.disable or self.closed:
            return
        now = self.clock()
        since = now - self.last_time
        step = self.total * EVERY_PERCENT / 100 if self.total else None
        if self.total is not None and self._reached():
            return  # the last line, on close, says it
        if since >= EVERY_SECONDS or (step is not None and self.n - self.last_n >= step and since >= MIN_SECONDS):
            self.last_time, self.last_n = now, self.n
            log.info("%s", self.line(now))

    def set_postfix(self, ordered_dict: Mapping[str, object] | None = None, refresh: bool | None = True,
                    **kwargs: object) -> None:
        values = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{key}={_short(value)}" for key, value in values.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def close(self) -> None:
        self._end(complete=self._reached())

    def _reached(self) -> bool:
        return self.total is None or self.n >= self.total

    def _end(self, complete: bool) -> None:
        """The last line, once: ``done`` or ``stopped at`` (a break, an error, a count short of the total)."""
        if self.closed:
            return
        self.closed = True
        if self.disable:
            return
        now = self.clock()
        rate, postfix = self._rate(now), f", {self.postfix}" if self.postfix else ""
        log.info("%s: %s%s in %s%s%s", self.desc, "done, " if complete else "stopped at ", self._count(),
                 _duration(now - self.start), f" ({rate})" if rate else "", postfix)

    def line(self, now: float) -> str:
        """The periodic line: count, share of the total, times, rate and the postfix."""
        parts = [self._count() + (f" ({100 * self.n / self.total:.0f}%)" if self.total else "")]
        parts.append(f"{_duration(now - self.start)} elapsed")
        per_second = (self.n - self.initial) / max(now - self.start, 1e-9)
        if self.total and per_second > 0:
            parts.append(f"~{_duration((self.total - self.n) / per_second)} left")
        if rate := self._rate(now):
            parts.append(rate)
        if self.postfix:
            parts.append(self.postfix)
        return f"{self.desc}: " + ", ".join(parts)

    def _count(self) -> str:
        """``40/100 img``; with ``unit_scale``, ``6.00MB/20.0MB``."""
        def number(value: float) -> str:
            if self.unit_scale:
                return tqdm.format_sizeof(value) + self.unit
            return str(int(value)) if float(value).is_integer() else f"{value:.4g}"

        counted = number(self.n) + (f"/{number(self.total)}" if self.total is not None else "")
        return counted if self.unit_scale else f"{counted} {self.unit}"

    def _rate(self, now: float) -> str:
        seconds, done = now - self.start, self.n - self.initial
        if seconds <= 0 or done <= 0:
            return ""
        if self.unit_scale:
            return f"{tqdm.format_sizeof(done / seconds)}{self.unit}/s"
        if done / seconds >= 1:
            return f"{done / seconds:.3g} {self.unit}/s"
        return f"{seconds / done:.3g} s/{self.unit}"


def _duration(seconds: float) -> str:
    """``12.3 s`` under a minute, else tqdm's ``[h:]mm:ss``."""
    return f"{seconds:.1f} s" if seconds < 60 else tqdm.format_interval(seconds)


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# What progress() returns: annotate with it (``Progress[Any]`` for a bar counted by ``update``).
Progress = Union["tqdm[T]", LogProgress[T]]


def is_terminal() -> bool:
    """Whether stderr (where tqdm draws) is a terminal."""
    stream = sys.stderr
    return stream is not None and hasattr(stream, "isatty") and stream.isatty()


@overload
def progress(iterable: Iterable[T], *, desc: str, total: float | None = None, unit: str = "it",
             unit_scale: bool = False, initial: float = 0, leave: bool = True, disable: bool = False) -> Progress[T]: ...


@overload
def progress(iterable: None = None, *, desc: str, total: float | None = None, unit: str = "it",
             unit_scale: bool = False, initial: float = 0, leave: bool = True, disable: bool = False) -> Progress[Any]: ...


def progress(iterable: Iterable[Any] | None = None, *, desc: str, total: float | None = None, unit: str = "it",
             unit_scale: bool = False, initial: float = 0, leave: bool = True, disable: bool = False) -> Progress[Any]:
    """A progress bar over ``iterable`` (or counted by ``update``): tqdm's on a terminal, plain log
    lines elsewhere (:class:`LogProgress`). ``leave=False`` (clear the bar when done) applies to the
    terminal only; ``disable`` silences both."""
    if is_terminal():
        return tqdm(iterable, desc=desc, total=total, unit=unit, unit_scale=unit_scale, initial=initial, leave=leave,
                    disable=disable, dynamic_ncols=True)
    return LogProgress(iterable, desc=desc, total=total, unit=unit, unit_scale=unit_scale, initial=initial,
                       disable=disable)
