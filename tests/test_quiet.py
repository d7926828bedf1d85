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


THREADS_SCRIPT = textwrap.dedent("""
    import sys, threading
    from jhuman import quiet

    quiet.StderrFilter()
    PIECES = ["Traceback (most recent call last):\\n", '  File "base_events.py", line 806, in call_soon_threadsafe\\n',
              "    ", "self._check_closed()", "\\n", "RuntimeError", ": ", "Event loop is closed", "\\n"]
    schedule = [(name, piece) for piece in PIECES for name in ("a", "b")]  # a0 b0 a1 b1 ...: interleaved
    position, moved = [0], threading.Condition()

    def closed_loop_traceback(name):  # Python's traceback printer: indentation, text, newline, each a write
        for i, (who, piece) in enumerate(schedule):
            if who != name:
                continue
            with moved:
                moved.wait_for(lambda: position[0] == i)
                sys.stderr.write(piece)
                position[0] += 1
                moved.notify_all()

    def other_traceback():  # a real error of another thread: it must pass whole
        sys.stderr.write("Traceback (most recent call last):\\n")
        sys.stderr.write("    ")
        sys.stderr.write("x = 1 / 0")
        sys.stderr.write("\\nZeroDivisionError: division by zero\\n")

    threads = [threading.Thread(target=closed_loop_traceback, args=(n,)) for n in "ab"]
    threads.append(threading.Thread(target=other_traceback))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    sys.stderr.write("step 3/9\\r")
    sys.stderr.write("step 4/9\\n")
""")


def test_interleaved_python_tracebacks_of_native_threads_are_dropped_each_whole_and_real_errors_pass():
    result = subprocess.run([sys.executable, "-c", THREADS_SCRIPT], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        b"Traceback (most recent call last):\n    x = 1 / 0\nZeroDivisionError: division by zero\n"
        b"step 3/9\rstep 4/9\n"
    )
