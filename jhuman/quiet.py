"""Start-up notices of native libraries, and the echoes of a failed checkpoint write, kept off the console.

TensorFlow writes its oneDNN and CPU-feature notices (and absl's "All log messages before
absl::InitializeLog()" line) from C++ while it is imported, before TF_CPP_MIN_LOG_LEVEL is read. We import it
with the process's stderr (file descriptor 2) sent to a temporary file, then pass on every line that is not
one of those known notices, so real warnings and errors still reach the user.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import sys
import tempfile
import termios
import threading
import time

NOTICES = (
    "All log messages before absl::InitializeLog() is called",
    "oneDNN custom operations are on",
    "cpu_feature_guard",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions",
)


# After a checkpoint write fails, TensorStore's pending callbacks hit orbax's closed event loop and each prints
# this traceback (hundreds of lines); the failure itself reaches the user as one CheckpointSaveError line.
CLOSED_LOOP = "RuntimeError: Event loop is closed"
CLOSED_LOOP_FRAMES = ("in call_soon_threadsafe", "in _check_closed")  # its frames, if the end never comes


def _without_noise(text: str) -> str:
    """`text` without NOTICES lines and without traceback blocks that end in CLOSED_LOOP."""
    out, block = [], []
    for line in text.splitlines(keepends=True):
        if block or line.startswith("Traceback (most recent call last):"):
            block.append(line)
            if not line.startswith((" ", "Traceback")):  # the block's last line: the exception
                if CLOSED_LOOP not in line:
                    out.extend(block)
                block = []
            continue
        if not any(notice in line for notice in NOTICES):
            out.append(line)
    return "".join(out + block)


@contextlib.contextmanager
def native_notices_filtered(drop_on_error: bool = False):
    """Runs the block with fd 2 captured; afterwards writes what was captured, less the known noise
    (NOTICES lines, closed-event-loop tracebacks). drop_on_error: when the block raises, nothing captured is
    written (the caller reports the failure itself: a failed checkpoint write's threads echo it in split,
    interleaved traceback fragments no line filter can reassemble)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            if drop_on_error:
                captured.truncate(0)
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            sys.stderr.write(_without_noise(captured.read().decode(errors="replace")))
            sys.stderr.flush()


def import_tensorflow() -> None:
    """Imports TensorFlow (the input pipelines' dependency) without its start-up notices."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_notices_filtered():
        import tensorflow  # noqa: F401


_ACTIVE: StderrFilter | None = None  # the process's filter, while it runs


def error_line(line: str) -> None:
    """Writes one line to the user's stderr as a single write: through the active StderrFilter's real stderr
    (past the pipe native threads write into), else sys.stderr."""
    if _ACTIVE is not None:
        _ACTIVE.write_line(line)
    else:
        sys.stderr.write(line.rstrip("\n") + "\n")
        sys.stderr.flush()


class _LineFilter:
    """The filter's logic for one writer: complete lines pass (less NOTICES), a traceback block is held until
    its exception line and dropped if that line is CLOSED_LOOP, a partial line that cannot start a traceback
    (a progress bar redrawn with '\\r') passes at once. `emit` receives whole lines or whole blocks."""

    TRACEBACK = "Traceback (most recent call last):"

    def __init__(self, emit):
        self._emit = emit
        self._block: list[str] = []
        self._pending = ""  # the current line's text not yet decided on (only at the start of a line)
        self._passed = False  # the current line's start was already passed on: its rest follows as it is

    def _line(self, line: str) -> None:
        """One complete line (with its newline)."""
        if self._block:
            self._block.append(line)
            if not line.startswith((" ", "\t")):  # the exception line closes the block
                if CLOSED_LOOP not in line:
                    self._emit("".join(self._block))
                self._block = []
        elif line.startswith(self.TRACEBACK):
            self._block = [line]
        elif not any(notice in line for notice in NOTICES):
            self._emit(line)

    def feed(self, text: str) -> None:
        if self._passed:
            head, sep, text = text.partition("\n")
            self._emit(head + sep)
            self._passed = not sep
            if not sep:
                return
        text = self._pending + text
        self._pending = ""
        *lines, rest = text.split("\n")
        for line in lines:
            self._line(line + "\n")
        if not rest:
            return
        if self._block or self.TRACEBACK.startswith(rest[: len(self.TRACEBACK)]):
            self._pending = rest  # might be (part of) a traceback: wait for the end of the line
        else:
            self._emit(rest)  # a progress bar's partial line: show it now
            self._passed = True

    def finish(self) -> None:
        """Passes on what is still held (a block or a line cut off at the end), unless it is the start of a
        closed-event-loop traceback cut off by the process's exit."""
        held = "".join(self._block) + self._pending
        self._block, self._pending = [], ""
        if held and not any(frame in held for frame in CLOSED_LOOP_FRAMES):
            self._emit(held)


class ThreadLines:
    """sys.stderr, one line filter per writing thread. A native thread that calls into Python (TensorStore's
    callbacks after a failed checkpoint write) prints its traceback through sys.stderr in pieces (indentation,
    text and newline as separate writes); several such threads at once interleave those pieces, which no
    filter of the merged stream can take apart. Split by thread, each traceback arrives whole and is dropped
    or passed whole."""

    def __init__(self, real):
        self._real = real
        self._lock = threading.RLock()  # reentrant: a garbage-collected task may log while we write
        self._filters: dict[int, _LineFilter] = {}

    def _emit(self, text: str) -> None:
        with self._lock:
            self._real.write(text)
            self._real.flush()

    def write(self, text: str) -> int:
        ident = threading.get_ident()
        with self._lock:
            line_filter = self._filters.get(ident)
            if line_filter is None:
                line_filter = self._filters[ident] = _LineFilter(self._emit)
        line_filter.feed(text)
        return len(text)

    def flush(self) -> None:
        self._real.flush()

    def finish(self) -> None:
        for line_filter in list(self._filters.values()):
            line_filter.finish()
        self.flush()

    def __getattr__(self, name):  # encoding, fileno, isatty, ...: the real stream's
        return getattr(self._real, name)


class StderrFilter:
    """Process-wide: file descriptor 2 goes through a pipe that a thread forwards to the real stderr at once,
    holding back only traceback blocks, which it drops if they end in CLOSED_LOOP (written by native threads
    at any moment after a checkpoint write failed, so no narrower window can catch them); sys.stderr is
    wrapped in ThreadLines so that Python-level tracebacks of several threads are filtered each on its own.
    Partial lines (progress bars redrawn with '\\r') pass through immediately. `close()` restores fd 2 and
    sys.stderr and drains the pipe."""

    def __init__(self):
        sys.stderr.flush()
        self._real = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._read_end = read_end
        self._filter = _LineFilter(self._emit)
        self._thread = threading.Thread(target=self._pump, name="stderr-filter", daemon=True)
        self._thread.start()
        self._python_stderr = sys.stderr
        sys.stderr = ThreadLines(sys.stderr)
        atexit.register(self.close)
        global _ACTIVE
        _ACTIVE = self

    def _emit(self, text: str) -> None:
        if text:
            os.write(self._real, text.encode(errors="replace"))

    def _pump(self) -> None:
        while True:
            try:
                chunk = os.read(self._read_end, 65536)
            except OSError:
                break
            if not chunk:
                break
            self._filter.feed(chunk.decode(errors="replace"))
        self._filter.finish()

    def write_line(self, line: str) -> None:
        """Writes `line` straight to the real stderr in one write, after what is already in the pipe (waiting
        at most 0.5 s for the pump), so a native thread's traceback being written into the pipe at this moment
        can neither split it nor be glued to it."""
        sys.stderr.flush()
        deadline = time.monotonic() + 0.5
        waiting = bytearray(4)
        while time.monotonic() < deadline:
            fcntl.ioctl(self._read_end, termios.FIONREAD, waiting)
            if int.from_bytes(waiting, sys.byteorder) == 0:
                break
            time.sleep(0.005)
        os.write(self._real, (line.rstrip("\n") + "\n").encode(errors="replace"))

    def close(self) -> None:
        global _ACTIVE
        if _ACTIVE is self:
            _ACTIVE = None
        if self._thread is None:
            return
        if isinstance(sys.stderr, ThreadLines):
            sys.stderr.finish()
            sys.stderr = self._python_stderr
        sys.stderr.flush()
        os.dup2(self._real, 2)  # closes our pipe's write end; children may still hold a copy
        self._thread.join(timeout=2.0)
        self._thread = None
