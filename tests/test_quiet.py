"""The process-wide stderr filter: a native thread's closed-event-loop traceback is dropped even when it is
being written at the moment the CLI prints its one error line."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import os, threading, time
    from jhuman import quiet

    quiet.StderrFilter()
    started, printed = threading.Event(), threading.Event()

    def native_thread():  # writes its traceback into fd 2 in pieces, as TensorStore's callbacks do
        os.write(2, b'Traceback (most recent call last):\\n  File "base_events.py", line 806, in call_soon')
        started.set()
        printed.wait()
        os.write(2, b'_threadsafe\\n    self._check_closed()\\n')
        os.write(2, b'RuntimeError: Event loop is closed\\n')

    thread = threading.Thread(target=native_thread)
    thread.start()
    started.wait()
    time.sleep(0.05)
    quiet.error_line("error: could not save the checkpoint of step 4")
    printed.set()
    thread.join()
    os.write(2, b"a warning that must pass\\n")
""")


def test_an_error_line_written_during_a_native_traceback_is_neither_split_nor_lost():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "error: could not save the checkpoint of step 4",
        "a warning that must pass",
    ]


def test_without_the_filter_the_error_line_goes_to_stderr_whole():
    script = "from jhuman import quiet; quiet.error_line('error: one line')"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stderr == "error: one line\n"
