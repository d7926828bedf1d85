import jax
import ml_collections
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jhuman import sharding


def test_leaf_spec_shards_largest_divisible_axis():
    assert sharding.leaf_spec((3, 3, 64, 128), fsdp=4, min_size=1) == P(None, None, None, "fsdp")
    assert sharding.leaf_spec((3, 3, 63, 6), fsdp=4, min_size=1) == P()  # nothing divisible
    assert sharding.leaf_spec((128,), fsdp=4, min_size=1024) == P()  # too small
    assert sharding.leaf_spec((128, 64), fsdp=1, min_size=1) == P()


def test_mesh_from_config():
    mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": -1, "fsdp": 2}))
    assert mesh.shape == {"data": jax.device_count() // 2, "fsdp": 2}
    assert sharding.make_mesh(ml_collections.ConfigDict({"data": 1, "fsdp": 1})).devices.size == 1
    with pytest.raises(ValueError, match="devices"):
        sharding.make_mesh(ml_collections.ConfigDict({"data": 16, "fsdp": 1}))


def test_batch_size_divides_over_the_mesh_in_use():
    one = sharding.make_mesh(ml_collections.ConfigDict({"data": 1, "fsdp": 1}))
    assert sharding.per_host_batch_size(4, one) == 4  # a one-device mesh on an 8-device host takes batch 4
    every = sharding.make_mesh(ml_collections.ConfigDict({"data": -1, "fsdp": 1}))
    with pytest.raises(
        ValueError, match="eval.batch_size=4 must divide evenly over 1 processes and 8 devices"
    ):
        sharding.per_host_batch_size(4, every, "eval.batch_size")


def test_global_batch_and_prefetch_keep_order():
    mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": -1, "fsdp": 1}))
    batches = [{"x": np.full((8, 2), i, np.float32)} for i in range(5)]
    out = list(sharding.prefetch_to_device(iter(batches), mesh))
    assert [int(b["x"][0, 0]) for b in out] == list(range(5))
    assert out[0]["x"].sharding.spec == P(("data", "fsdp"))
    assert len(out[0]["x"].addressable_shards) == jax.device_count()


def test_prefetch_surfaces_producer_errors():
    mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": -1, "fsdp": 1}))

    def broken():
        yield {"x": np.zeros((8,), np.float32)}
        raise OSError("disk gone")

    it = sharding.prefetch_to_device(broken(), mesh)
    next(it)
    with pytest.raises(OSError, match="disk gone"):
        next(it)
