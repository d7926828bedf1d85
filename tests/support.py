"""What several test modules share (importable because tests/conftest.py puts this folder on sys.path)."""

import os
import signal
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARSING = os.path.join(REPO, "configs", "parsing.py")


def run(args, timeout=300, **env):
    """`args` as a user runs them: a subprocess from the repository root on one CPU device (the suite's 8 fake
    devices are not passed on; `env` may set XLA_FLAGS again); fails the test, with its output, unless it
    exits 0."""
    environ = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    environ.update(PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", **env)
    done = subprocess.run(args, cwd=REPO, env=environ, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


class Preempting:
    """A training stream that sends this process SIGTERM (what a scheduler does) after `at` batches."""

    def __init__(self, stream, at):
        self.stream, self.at, self.count = stream, at, 0

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self.stream)
        self.count += 1
        if self.count == self.at:
            os.kill(os.getpid(), signal.SIGTERM)
        return batch

    @property
    def next_position(self):
        return self.stream.next_position

    @property
    def skipped(self):
        return getattr(self.stream, "skipped", 0)

    def close(self):
        close = getattr(self.stream, "close", None)
        if close:
            close()


def train_args(workdir, cache, *extra):
    """`jhuman train` arguments of a tiny parsing run (4 steps, checkpoints at 2 and 4) on cached synthetic data."""
    return [
        "train", "--config", f"{PARSING}:size=tiny,data=synthetic", "--workdir", str(workdir),
        f"--config.data.cache_dir={cache}", "--config.data.synthetic_num=1200",
        "--config.data.synthetic_size=(96, 128)", "--config.data.crop_size=48", "--config.train.batch_size=8",
        "--config.train.steps=4", "--config.train.checkpoint_every=2", "--config.train.log_every=1",
        "--config.train.progress_bar=false", "--config.train.num_pictures=0", "--config.train.eval_every=0",
        "--config.eval.limit=8", "--config.eval.batch_size=8", "--config.eval.pad_size=128", *extra,
    ]  # fmt: skip


def snapshot(folder):
    """{relative path: bytes} of every file under `folder`."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out


def one_line(capsys):
    """The one `error: ...` line a failed CLI command wrote on stderr."""
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]
