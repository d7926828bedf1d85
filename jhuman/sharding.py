"""Meshes, parameter sharding rules and host batches -> global arrays.

One `jax.jit` step over a `Mesh` with axes ('data', 'fsdp'): the batch is split over both axes (every
device sees a different slice of the global batch); a parameter or optimizer leaf of at least
`fsdp_min_size` elements is sharded on 'fsdp' along its largest divisible axis (ZeRO-3 style), all other
leaves are replicated. With fsdp = 1 this is plain data parallelism.
"""

from __future__ import annotations

import collections
import itertools
import threading
from typing import Any, Iterable, Iterator

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

BATCH_AXES = ("data", "fsdp")


def maybe_initialize_distributed(config) -> None:
    """`jax.distributed.initialize()` when the config names a coordinator (multi-host runs); must run before
    anything asks JAX for devices or process indices. CPU processes talk through gloo collectives."""
    dist = config.distributed
    if dist.coordinator_address and not jax.distributed.is_initialized():
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # used only by CPU devices
        jax.distributed.initialize(
            coordinator_address=dist.coordinator_address,
            num_processes=int(dist.num_processes),
            process_id=int(dist.process_id),
        )


def make_mesh(mesh_config) -> Mesh:
    """A ('data', 'fsdp') mesh over all devices of all processes; data = -1 takes what fsdp leaves."""
    count = jax.device_count()
    fsdp = int(mesh_config.fsdp)
    data = int(mesh_config.data)
    if data == -1:
        if count % fsdp:
            raise ValueError(f"mesh.fsdp={fsdp} does not divide the {count} devices")
        data = count // fsdp
    auto = (jax.sharding.AxisType.Auto,) * 2  # explicit axes (make_mesh's default) break linen convs
    if data * fsdp == count:
        return jax.make_mesh((data, fsdp), BATCH_AXES, axis_types=auto)
    if data * fsdp < count and jax.process_count() == 1:
        # A single host may run on a subset of its devices (e.g. to compare 1 device against 8).
        devices = np.array(jax.devices()[: data * fsdp]).reshape(data, fsdp)
        return Mesh(devices, BATCH_AXES, axis_types=auto)
    raise ValueError(
        f"mesh.data={data} x mesh.fsdp={fsdp} does not fit the {count} devices; "
        f"set mesh.data=-1 to use them all"
    )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def leaf_spec(shape: tuple[int, ...], fsdp: int, min_size: int) -> P:
    """Shards the largest axis divisible by `fsdp` when the leaf is big enough, else replicates."""
    if fsdp <= 1 or not shape or int(np.prod(shape)) < min_size:
        return P()
    for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
        if shape[axis] % fsdp == 0:
            spec = [None] * len(shape)
            spec[axis] = "fsdp"
            return P(*spec)
    return P()


def state_shardings(abstract_state: Any, mesh: Mesh, min_size: int = 2**14) -> Any:
    """NamedShardings for every leaf of a (abstract) train state, by `leaf_spec`."""
    fsdp = mesh.shape["fsdp"]
    return jax.tree.map(
        lambda x: NamedSharding(mesh, leaf_spec(tuple(x.shape), fsdp, min_size)), abstract_state
    )


def per_host_batch_size(
    global_batch_size: int, mesh: Mesh | None = None, key: str = "train.batch_size"
) -> int:
    """This process's share of a global batch, which must divide evenly over the processes and over the
    devices of `mesh` (default: all devices; a single host's mesh may use a subset, `make_mesh`)."""
    count = jax.process_count()
    devices = jax.device_count() if mesh is None else mesh.devices.size
    if global_batch_size % count or global_batch_size % devices:
        raise ValueError(
            f"{key}={global_batch_size} must divide evenly over {count} processes and {devices} devices"
        )
    return global_batch_size // count


def to_global(host_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This host's slice of the batch -> global arrays sharded over the batch axes.

    Non-numeric fields (e.g. example ids as strings) stay on the host and are left out.
    """
    sharding = batch_sharding(mesh)
    arrays = {k: np.asarray(v) for k, v in host_batch.items()}
    return {
        k: jax.make_array_from_process_local_data(sharding, v)
        for k, v in arrays.items()
        if v.dtype.kind in "biuf"
    }


def prefetch_to_device(batches: Iterable[dict], mesh: Mesh, size: int = 2) -> Iterator[dict]:
    """Keeps `size` global batches in flight on the devices while the step runs (a background thread)."""
    queue: collections.deque = collections.deque()
    lock = threading.Condition()
    done = object()
    error: list[BaseException] = []

    def producer():
        try:
            for batch in batches:
                item = to_global(batch, mesh)
                with lock:
                    while len(queue) >= size:
                        lock.wait()
                    queue.append(item)
                    lock.notify_all()
        except BaseException as e:  # surfaced in the consumer
            error.append(e)
        with lock:
            queue.append(done)
            lock.notify_all()

    thread = threading.Thread(target=producer, daemon=True, name="prefetch_to_device")
    thread.start()
    for _ in itertools.count():
        with lock:
            while not queue:
                lock.wait()
            item = queue.popleft()
            lock.notify_all()
        if item is done:
            if error:
                raise error[0]
            return
        yield item
