"""The generic stream: exact resume, seeds, host shards, corrupt-data accounting, padded evaluation."""

import itertools
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from input_pipeline import pipeline
from input_pipeline.pipeline import CorruptExample, Feature, Stats

SPEC = {"x": Feature((), np.int64), "r": Feature((2,), np.float32)}


def _load(example, rng):
    """Fake loader: the example itself and two draws of its per-example rng."""
    return {"x": example, "r": rng.random(2)}


def _take(stream, batches):
    return [next(stream) for _ in range(batches)]


def _flat(batches):
    return np.concatenate([b["x"] for b in batches]), np.concatenate([b["r"] for b in batches])


def test_resume_equals_tail_of_stream_from_zero():
    examples = list(range(100, 107))  # n = 7, batch 3: batches straddle epochs
    full = _take(pipeline.train_stream(examples, _load, SPEC, batch_size=3, seed=5), 8)
    xs, rs = _flat(full)
    # A resumed run (start_index = step * batch) sees exactly the remaining batches.
    stream = pipeline.train_stream(examples, _load, SPEC, batch_size=3, seed=5, start_index=2 * 3)
    for a, b in zip(_take(stream, 6), full[2:]):
        np.testing.assert_array_equal(a["x"], b["x"])
        np.testing.assert_array_equal(a["r"], b["r"])
    assert stream.next_position == 8 * 3
    # Any start index: the stream equals the full stream with the first k examples removed.
    for k in (1, 5, 13):
        tail = _flat(
            _take(pipeline.train_stream(examples, _load, SPEC, batch_size=3, seed=5, start_index=k), 2)
        )
        np.testing.assert_array_equal(tail[0], xs[k : k + 6])
        np.testing.assert_array_equal(tail[1], rs[k : k + 6])
    # Every epoch is a permutation of the examples, and epochs differ.
    epochs = [sorted(xs[e * 7 : (e + 1) * 7]) for e in range(3)]
    assert all(e == examples for e in epochs)
    assert list(xs[:7]) != list(xs[7:14])


def test_order_matches_documented_formula():
    xs, rs = _flat(_take(pipeline.train_stream(list(range(5)), _load, SPEC, batch_size=5, seed=3), 2))
    expected = np.concatenate([np.random.default_rng([3, e]).permutation(5) for e in range(2)])
    np.testing.assert_array_equal(xs, expected)
    np.testing.assert_allclose(rs[6], np.random.default_rng([3, 6]).random(2).astype(np.float32))


def test_different_seeds_differ():
    a = _flat(_take(pipeline.train_stream(list(range(20)), _load, SPEC, batch_size=10, seed=0), 1))
    b = _flat(_take(pipeline.train_stream(list(range(20)), _load, SPEC, batch_size=10, seed=1), 1))
    assert not np.array_equal(a[0], b[0])
    assert not np.allclose(a[1], b[1])


def test_hosts_stack_into_the_global_batch_of_one_process():
    """The global batch of step t (host batches stacked in process order) and each example's randomness
    are the same for 1, 2 and 4 processes, from the start and after a resume."""
    examples = list(range(11))
    one = _take(pipeline.train_stream(examples, _load, SPEC, batch_size=8, seed=2), 4)
    for hosts in (2, 4):
        for start_step in (0, 1):
            streams = [
                pipeline.train_stream(examples, _load, SPEC, batch_size=8 // hosts, seed=2, process_index=p,
                                      process_count=hosts, start_index=start_step * 8 // hosts)
                for p in range(hosts)
            ]  # fmt: skip
            for t in range(start_step, 4):
                parts = [next(s) for s in streams]
                np.testing.assert_array_equal(np.concatenate([b["x"] for b in parts]), one[t]["x"])
                np.testing.assert_array_equal(np.concatenate([b["r"] for b in parts]), one[t]["r"])
            assert streams[0].next_position == 4 * 8 // hosts
    with pytest.raises(ValueError, match="process_index 3 not in"):
        pipeline.train_stream(examples, _load, SPEC, batch_size=2, process_index=3, process_count=3)


def test_evaluation_shards_are_disjoint_and_cover_everything():
    examples = list(range(11))
    shards = [pipeline.host_shard(examples, p, 3) for p in range(3)]
    assert sorted(itertools.chain(*shards)) == examples
    with pytest.raises(ValueError):
        pipeline.host_shard(examples, 3, 3)


def _load_with_corrupt(example, rng):
    if example == 4:
        raise CorruptExample("/data/img4.jpg", "cannot decode image")
    return _load(example, rng)


def test_corrupt_training_example_is_replaced_counted_and_moves_nothing_else():
    stats = Stats()
    stream = pipeline.train_stream(list(range(6)), _load_with_corrupt, SPEC, batch_size=5, stats=stats)
    clean = _flat(_take(pipeline.train_stream(list(range(6)), _load, SPEC, batch_size=5), 4))
    got = _flat(_take(stream, 4))
    assert 4 not in got[0] and stats.skipped_files == ["/data/img4.jpg"]
    # Every other slot is exactly as without the corrupt file; a slot of example 4 takes the example of the
    # same offset in the next epoch (and again while that one is 4), keeping the slot's own randomness.
    expected, skips = [], 0
    for slot in range(20):
        j = 0
        while pipeline.example_index(slot + 6 * j, 6, 0) == 4:
            j += 1
        expected.append(pipeline.example_index(slot + 6 * j, 6, 0))
        skips += j
    np.testing.assert_array_equal(got[0], expected)
    np.testing.assert_array_equal(got[1], clean[1])
    assert stream.skipped == skips >= 3 and stats.skipped >= skips
    # Positions never drift: step * batch resumes exactly.
    assert stream.next_position == 20
    resumed = pipeline.train_stream(list(range(6)), _load_with_corrupt, SPEC, batch_size=5, start_index=20)
    for a, b in zip(_take(resumed, 2), _take(stream, 2)):
        np.testing.assert_array_equal(a["x"], b["x"])
        np.testing.assert_array_equal(a["r"], b["r"])


def test_all_corrupt_raises_instead_of_hanging():
    def bad(example, rng):
        raise CorruptExample(f"/data/{example}", "garbage")

    stream = pipeline.train_stream(list(range(3)), bad, SPEC, batch_size=2)
    with pytest.raises(Exception, match="corrupt"):
        next(stream)


def _eval_load(example):
    if example == 7:
        raise CorruptExample("/data/img7.jpg", "cannot decode image")
    return {"x": example, "r": np.full(2, example, np.float32)}


@pytest.mark.parametrize("n, hosts, batch", [(10, 3, 2), (9, 2, 4), (1, 4, 2)])
def test_eval_every_host_same_batches_and_mask(n, hosts, batch):
    stats = Stats()
    seen = []
    for p in range(hosts):
        stream = pipeline.eval_stream(
            list(range(n)),
            _eval_load,
            SPEC,
            batch_size=batch,
            process_index=p,
            process_count=hosts,
            stats=stats,
        )
        batches = list(stream)
        assert len(batches) == len(stream) == pipeline.eval_batches_per_host(n, batch, hosts)
        x = np.concatenate([b["x"] for b in batches])
        mask = np.concatenate([b["mask"] for b in batches])
        assert mask.dtype == bool and all(b["mask"].shape == (batch,) for b in batches)
        shard = pipeline.host_shard(list(range(n)), p, hosts)
        expected_mask = (np.arange(len(x)) < len(shard)) & np.isin(
            np.arange(len(x)), np.flatnonzero(np.array(shard) != 7)
        )  # padding and the corrupt one: False
        np.testing.assert_array_equal(mask, expected_mask)
        np.testing.assert_array_equal(x[mask], [i for i in shard if i != 7])  # in order
        assert not mask[len(shard) :].any() and (x[len(shard) :] == 0).all()  # dummies: padding values
        seen.extend(x[mask])
    assert sorted(seen) == [i for i in range(n) if i != 7]
    assert stats.skipped == (1 if n > 7 else 0)
    assert stats.skipped_files == (["/data/img7.jpg"] if n > 7 else [])


def test_str_features_come_back_as_numpy_strings():
    spec = {"id": Feature((), str)}
    stream = pipeline.eval_stream(["a", "bé"], lambda e: {"id": e}, spec, batch_size=3)
    (batch,) = list(stream)
    assert list(batch["id"]) == ["a", "bé", ""] and list(batch["mask"]) == [True, True, False]


def test_stats_are_thread_safe():
    stats = Stats()

    def work(t):
        for i in range(500):
            stats.record_skip(f"file{i % 7}", "x")
            stats.record_downscale()

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stats.skipped == 4000 and stats.downscaled == 4000
    assert sorted(stats.skipped_files) == [f"file{i}" for i in range(7)]
    assert stats.as_dict() == {"skipped": 4000, "skipped_files": 7, "downscaled": 4000}


def test_process_exits_with_a_stream_still_running():
    """Regression: an open stream with loader calls in flight used to hang interpreter shutdown forever."""
    code = textwrap.dedent("""
      import time
      import numpy as np
      from input_pipeline import pipeline
      def load(example, rng):
        time.sleep(0.02)
        return {"x": np.zeros((256, 256, 3), np.float32)}
      spec = {"x": pipeline.Feature((256, 256, 3), np.float32)}
      stream = pipeline.train_stream(list(range(50)), load, spec, batch_size=4)
      next(stream)
      evaluation = pipeline.eval_stream(list(range(50)), lambda e: load(e, None), spec, batch_size=4)
      next(iter(evaluation))
      print("done")
  """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "done" in result.stdout


def test_close_stops_streams():
    stream = pipeline.train_stream(list(range(5)), _load, SPEC, batch_size=2)
    with stream:
        next(stream)
    with pytest.raises(StopIteration):
        next(stream)
    evaluation = pipeline.eval_stream(list(range(9)), _eval_load, SPEC, batch_size=2)
    it = iter(evaluation)
    next(it)
    evaluation.close()
    assert list(it) == []
    assert len(list(evaluation)) == len(evaluation) == 5  # a new pass still works
