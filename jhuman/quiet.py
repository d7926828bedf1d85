"""Start-up notices of native libraries, and the echoes of a failed checkpoint write, kept off the console.

TensorFlow writes its oneDNN and CPU-feature notices (and absl's "All log messages before
absl::InitializeLog()" line) from C++ while it is imported, before TF_CPP_MIN_LOG_LEVEL is read. We import it
with the process's stderr (file descriptor 2) sent to a temporary file, then pass on every line that is not
one of those known notices, so real warnings and errors still reach the user.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

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
def native_notices_filtered():
    """Runs the block with fd 2 captured; afterwards writes what was captured, less the known noise
    (NOTICES lines, closed-event-loop tracebacks)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
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
