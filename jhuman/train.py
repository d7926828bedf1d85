"""THE trainer: mesh, sharded state, one jitted step, loop, evaluation, checkpoints, metrics, pictures.

Every task plugs in through the small interface in `jhuman.tasks` (init, loss, evaluator, data, predict,
visualize). The state is a plain dict {step, params, model_state, opt_state[, ema_params]} created already
sharded (`jax.jit(init, out_shardings=...)`); one `jax.jit` step with the state donated; global batches
from per-host tf.data batches; orbax checkpoints with exact resume (the data stream restarts at
`step * per_host_batch`, per-step randomness is `fold_in(seed, step)`).

Safety: a step whose loss or gradients are not finite leaves the state unchanged; the host sees it one
step later (metrics are fetched with a lag of one step so the device never idles), stops with
`NonFiniteLossError`, and never saves that state: the last good checkpoint stays intact. A checkpoint that
cannot be written (disk full) stops the run at once (`CheckpointSaveError`) with the last good one intact;
its partial files are removed on the next start. SIGTERM saves a checkpoint at the current step and returns
with `preempted_at` in the summary (the CLI exits with status 75 so that schedulers requeue). A workdir that
cannot be written, or whose saved config differs from this one in what shapes the run, is refused before
anything is built.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import signal
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jhuman import checkpoint, optim, sharding, stages, tasks, writers
from jhuman import config as config_lib
from jhuman import update as update_lib

log = logging.getLogger(__name__)


class TrainError(RuntimeError):
    """A run that cannot go on; the message is one line naming the step, file or key and what to do."""


class NonFiniteLossError(TrainError):
    """The loss became NaN/Inf; the run stopped without saving the bad state."""


class StalledError(TrainError):
    """The gradients were exactly zero for ZERO_GRADIENT_STEPS steps in a row: the networks stopped learning."""


# Steps of exactly zero gradients (every '*grad_norm' metric 0.0) after which a run stops: a network whose
# activations saturated (tanh/sigmoid outputs at exactly +-1, 0) never recovers, and would otherwise train on
# silently (seen with pose-guided synthesis at too large a learning rate: zero from step ~1500 of 3000).
ZERO_GRADIENT_STEPS = 100


class WorkdirError(TrainError):
    """The workdir cannot hold a run (a file, unwritable), or holds a run of another config."""


# Config keys a resumed run may change: run length, logging/evaluation cadence, where data lives, devices.
MAY_DIFFER = ("train.steps", "train.log_every", "train.eval_every", "train.checkpoint_every",
              "train.keep_checkpoints", "train.progress_bar", "train.num_pictures", "train.transfer_guard",
              "data.root", "data.cache_dir", "data.tfds_data_dir", "eval.*", "mesh.*", "distributed.*")  # fmt: skip


@dataclasses.dataclass
class Setup:
    """Everything built once per run (also used by `jhuman eval` / `predict` / benchmarks)."""

    config: Any
    task: Any
    mesh: Any
    optimizer: optim.Optimizer
    abstract_state: Any
    state_shardings: Any
    init_state: Callable

    @property
    def schedule(self) -> Callable:
        return self.optimizer.schedule


def total_steps(config) -> int:
    return int(config.train.steps)


def build(config) -> Setup:
    """Mesh, task, optimizer and the (abstract) sharded train state."""
    sharding.maybe_initialize_distributed(config)
    mesh = sharding.make_mesh(config.mesh)
    task = tasks.build(config)
    rng = jax.random.key(int(config.seed))

    abstract_vars = jax.eval_shape(task.init, rng)
    optimizer = optim.Optimizer(config.optim, abstract_vars["params"], total_steps(config))
    use_ema = float(config.train.ema_decay) > 0

    def init_state(key):
        variables = task.init(key)
        params = variables["params"]
        state = {
            "step": jnp.zeros((), jnp.int32),
            "params": params,
            "model_state": {k: v for k, v in variables.items() if k != "params"},
            "opt_state": optimizer.init(params),
        }
        if use_ema:
            state["ema_params"] = params
        return state

    abstract_state = jax.eval_shape(init_state, rng)
    shardings = sharding.state_shardings(abstract_state, mesh, int(config.mesh.fsdp_min_size))
    return Setup(config, task, mesh, optimizer, abstract_state, shardings, init_state)


def ema_mask(setup: Setup):
    """The leaves the EMA averages: train.ema_group's ('' = every parameter)."""
    group = setup.config.train.get("ema_group", "")
    return setup.optimizer.group_mask(group) if group else None


def make_train_step(setup: Setup) -> Callable:
    """The jitted `(state, batch) -> (state, metrics)`: state donated, shardings explicit.

    The update is the task's own `update(state, batch, rng, optimizer)` when it has one, else
    `jhuman.update.default_update`; around it the step adds the rng of this step, `batch["step"]`, the
    batch-norm statistics of frozen groups kept as they were, EMA (over train.ema_group), the finite guard
    and the step counter.
    """
    config, task, optimizer = setup.config, setup.task, setup.optimizer
    accum = int(config.train.grad_accum_steps)
    ema_decay = float(config.train.ema_decay)
    ema_leaves = ema_mask(setup)
    base_key = jax.random.key(int(config.seed) + 1)
    task_update = getattr(task, "update", None)

    def step(state, batch):
        rng = jax.random.fold_in(base_key, state["step"])
        batch = {**batch, "step": state["step"]}
        inner = {k: v for k, v in state.items() if k != "ema_params"}
        if task_update is not None:
            if accum != 1:
                raise ValueError("train.grad_accum_steps > 1 needs the default update; this task has its own")
            new_state, metrics = task_update(inner, batch, rng, optimizer)
        else:
            new_state, metrics = update_lib.default_update(task, inner, batch, rng, optimizer, accum)
        # Batch-norm statistics of a frozen group (or one outside its step window) stay as they were.
        frozen = optimizer.frozen_mask(state["model_state"], state["step"])
        new_state["model_state"] = jax.tree.map(
            lambda f, new, old: jnp.where(f, old, new), frozen, new_state["model_state"], state["model_state"]
        )
        new_state["step"] = state["step"] + 1
        if "ema_params" in state:
            new_state["ema_params"] = update_lib.ema_update(
                state["ema_params"], new_state["params"], ema_decay, ema_leaves
            )
        # A non-finite step changes nothing but the step counter: the state stays the last good one.
        finite = update_lib.all_finite(metrics)
        guarded = jax.tree.map(
            lambda new, old: jnp.where(finite, new, old),
            {k: v for k, v in new_state.items() if k != "step"},
            {k: v for k, v in state.items() if k != "step"},
        )
        guarded["step"] = new_state["step"]
        metrics = {**metrics, "finite": finite, **optimizer.learning_rates(state["step"])}
        return guarded, metrics

    batch_sharding = sharding.batch_sharding(setup.mesh)
    return jax.jit(
        step,
        in_shardings=(setup.state_shardings, batch_sharding),
        out_shardings=(setup.state_shardings, sharding.replicated(setup.mesh)),
        donate_argnums=0,
    )


def eval_variables(state) -> dict:
    params = state.get("ema_params", state["params"])
    return {"params": params, **state["model_state"]}


def evaluate(setup: Setup, state, split: str = "val") -> dict[str, float]:
    """Runs the task's evaluator over the whole split (accumulating on device), finalizes on host."""
    task, config = setup.task, setup.config
    evaluator = task.evaluator()
    # Device accumulators (a confusion matrix) are updated in one jitted call; host accumulators (COCO
    # results) jit their own device part and set `host_update = True`.
    update = (
        evaluator.update
        if getattr(evaluator, "host_update", False)
        else jax.jit(evaluator.update, donate_argnums=0)
    )
    acc = evaluator.init()
    per_host = sharding.per_host_batch_size(int(config.eval.batch_size), setup.mesh, "eval.batch_size")
    variables = eval_variables(state)
    for batch in task.eval_batches(split, per_host, jax.process_index(), jax.process_count()):
        acc = update(acc, variables, sharding.to_global(batch, setup.mesh))
    return evaluator.finalize(jax.device_get(acc))


def write_eval(workdir: str, split: str, step: int, results: dict) -> str:
    os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
    path = os.path.join(workdir, "eval", f"{split}_{step}.json")
    if jax.process_index() == 0:
        with open(path, "w") as f:
            json.dump({"step": step, "split": split, **results}, f, indent=2)
    return path


def prediction_pictures(setup: Setup, state, num: int) -> dict[str, np.ndarray]:
    """The task's pictures of predictions next to the ground truth on the first val examples."""
    task = setup.task
    batch = next(iter(task.eval_batches("val", num, 0, 1)))  # the same examples on every process
    # What predict takes: batch['image'], or the task's `predict_inputs(batch)` (a tree of arrays).
    inputs = task.predict_inputs(batch) if hasattr(task, "predict_inputs") else batch["image"]
    # Replicated over the mesh, so that every process takes part (the parameters span all processes).
    inputs = jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding.replicated(setup.mesh), np.asarray(x)),
        inputs,
    )
    outputs = jax.jit(task.predict, out_shardings=sharding.replicated(setup.mesh))(
        eval_variables(state), inputs
    )
    return task.visualize(batch, jax.device_get(outputs))


class _Preemption:
    """Turns SIGTERM into a flag the loop checks (a checkpoint is saved, then the run returns)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread
            self._previous = None
        return self

    def _handle(self, signum, frame):
        del signum, frame
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def create_or_restore(setup: Setup, ckpt: checkpoint.Checkpoints):
    """The latest checkpoint in the workdir restored into the run's sharding; else the sharded initial state
    with `init.backbone_weights` imported, then the `init.from_workdir` sources restored over it (stage
    chaining: jhuman.stages). A run that resumes its own checkpoint never reads those again."""
    if ckpt.latest_step() is not None:
        return ckpt.restore(setup.abstract_state, setup.state_shardings)
    init = jax.jit(setup.init_state, out_shardings=setup.state_shardings)
    state = init(jax.random.key(int(setup.config.seed)))
    changed = False
    # Pretrained weights (e.g. init.backbone_weights) are imported on the host into the fresh state.
    load = getattr(setup.task, "pretrained_variables", None)
    variables = load({"params": state["params"], **state["model_state"]}) if load else None
    if variables is not None:
        state = dict(
            state,
            params=variables["params"],
            model_state={k: v for k, v in variables.items() if k != "params"},
        )
        changed = True
    init_cfg = setup.config.get("init", {})
    srcs = stages.sources(init_cfg) if init_cfg else []
    if srcs:
        state, report = stages.restore_sources(state, setup.state_shardings, srcs)
        print(report)
        changed = True
    if changed:
        if "ema_params" in state:  # its own buffers: the step donates both, and a buffer donated twice fails
            state["ema_params"] = jax.tree.map(jnp.copy, state["params"])
        state = jax.device_put(state, setup.state_shardings)
    return state


def restore_workdir(workdir: str, overrides=(), step: int | None = None):
    """A trained run for evaluation or prediction: (config, setup, state, step) from `workdir`'s saved config
    (with `overrides`, "key=value" strings) and its checkpoint at `step` (default: the latest). A workdir
    without checkpoints, or a step it does not hold, is a FileNotFoundError naming the folder and the steps."""
    config = config_lib.apply_overrides(config_lib.load_saved_config(workdir), list(overrides))
    ckpt = checkpoint.Checkpoints(workdir)
    try:  # closed either way (orbax's threads otherwise fail at interpreter exit)
        if ckpt.latest_step() is None:
            raise FileNotFoundError(f"no checkpoint in {ckpt.directory}; train first")
        if step is not None and step not in ckpt.all_steps():
            raise FileNotFoundError(f"--step {step}: no such checkpoint in {ckpt.directory}; available steps: "
                                    f"{ckpt.all_steps()}")  # fmt: skip
        setup = build(config)
        state = ckpt.restore(setup.abstract_state, setup.state_shardings, step)
    finally:
        ckpt.close()
    return config, setup, state, int(jax.device_get(state["step"]))


def _position_path(workdir: str, step: int) -> str:
    return os.path.join(workdir, "data_positions", f"{step}_{jax.process_index()}.json")


def write_data_position(workdir: str, step: int, position, kept_steps) -> None:
    """Records where this host's data stream stands after `step` and how many corrupt training examples it
    has passed over so far, so that a resumed run reads exactly the examples an uninterrupted one would and
    goes on counting from there. position: (stream position or None, skipped so far)."""
    where, skipped = position
    os.makedirs(os.path.dirname(_position_path(workdir, step)), exist_ok=True)
    record = {"step": step, "skipped": int(skipped)}
    if where is not None:
        record["position"] = int(where)
    with open(_position_path(workdir, step), "w") as f:
        json.dump(record, f)
    keep = {step, *kept_steps}
    for name in os.listdir(os.path.dirname(_position_path(workdir, step))):
        if int(name.split("_")[0]) not in keep:
            os.remove(os.path.join(os.path.dirname(_position_path(workdir, step)), name))


def read_data_position(workdir: str, step: int, per_host_batch: int) -> tuple[int, int]:
    """(stream position to resume from at `step`, training examples skipped up to it): (step * batch, 0)
    when no record exists."""
    try:
        with open(_position_path(workdir, step)) as f:
            record = json.load(f)
    except FileNotFoundError:
        return step * per_host_batch, 0
    return int(record.get("position", step * per_host_batch)), int(record.get("skipped", 0))


def prepare_workdir(workdir: str) -> str:
    """The absolute workdir, created and checked writable (WorkdirError naming it otherwise)."""
    workdir = os.path.abspath(os.path.expanduser(workdir))
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise WorkdirError(f"--workdir {workdir} is a file, not a folder: choose another --workdir")
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".write_test_{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise WorkdirError(
            f"--workdir {workdir} cannot be written ({e.strerror or e}): choose a writable --workdir"
        ) from None
    return workdir


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(saved: dict, current: dict) -> tuple[list[str], list[str]]:
    """(differences that change the run, keys the code added since the run was saved), from two configs
    as JSON dicts; MAY_DIFFER keys are allowed to differ."""
    import fnmatch

    a, b = _flat(saved), _flat(current)
    allowed = lambda key: any(fnmatch.fnmatch(key, pattern) for pattern in MAY_DIFFER)
    changed = [f"{k}: {a.get(k)!r} in config.json, now {b.get(k)!r}"
               for k in sorted(set(a) | set(b)) if k in a and a.get(k) != b.get(k) and not allowed(k)]  # fmt: skip
    added = sorted(k for k in b if k not in a)
    return changed, added


def check_saved_config(config, workdir: str, has_checkpoint: bool) -> None:
    """Writes `<workdir>/config.json` for a new run; for a run with checkpoints, compares instead (never
    overwriting it) and refuses a config that differs in what shapes the run (WorkdirError listing keys)."""
    path = os.path.join(workdir, "config.json")
    if not has_checkpoint or not os.path.isfile(path):
        config_lib.save_config(config, workdir)
        return
    with open(path) as f:
        saved = json.load(f)
    current = json.loads(config.to_json_best_effort())
    changed, _ = config_differences(saved, current)
    if changed:
        raise WorkdirError(
            f"{workdir} holds a run of another config ({'; '.join(changed)}): resume it with the same config "
            "(only run length, logging/evaluation cadence, data locations and devices may change) or choose "
            "another --workdir"
        )


def run(config, workdir: str) -> dict:
    """Trains `config` in `workdir` (resuming from its latest checkpoint); returns a summary dict."""
    config_lib.validate(config)
    sharding.maybe_initialize_distributed(config)  # before anything asks JAX about processes
    workdir = prepare_workdir(workdir)
    is_main = jax.process_index() == 0
    ckpt = checkpoint.Checkpoints(workdir, int(config.train.keep_checkpoints))
    if is_main:
        check_saved_config(config, workdir, ckpt.latest_step() is not None)
    setup = build(config)
    if hasattr(setup.task, "workdir"):  # a task that writes files of its own there (computed statistics)
        setup.task.workdir = workdir
    train_cfg = config.train
    steps = total_steps(config)
    state = create_or_restore(setup, ckpt)
    start = int(jax.device_get(state["step"]))
    per_host = sharding.per_host_batch_size(int(train_cfg.batch_size), setup.mesh)
    start_position, skipped_before = read_data_position(workdir, start, per_host)
    stream = setup.task.train_batches(start_position, per_host, jax.process_index(), jax.process_count())
    # (stream position, corrupt examples passed over so far) after each prefetched batch, taken per step.
    positions: collections.deque = collections.deque()
    position = (start_position, skipped_before)

    def host_batches():
        for host_batch in stream:
            skipped = getattr(stream, "skipped", None)
            if skipped is None:  # a stream that does not count: the task's Stats (may run ahead)
                skipped = setup.task.data_stats.skipped
            positions.append((getattr(stream, "next_position", None), skipped_before + skipped))
            yield host_batch

    batches = sharding.prefetch_to_device(host_batches(), setup.mesh)
    train_step = make_train_step(setup)
    writer = writers.MetricWriter(workdir, enabled=is_main)
    progress = writers.Progress(
        steps, start, int(train_cfg.batch_size), enabled=is_main and bool(train_cfg.progress_bar)
    )
    if start:
        writer.write_resumed(start)
        progress.note(f"resumed from the checkpoint at step {start} in {ckpt.directory}")
    last_saved = ckpt.latest_step()
    history: list[dict] = []
    summary = {"workdir": workdir, "start_step": start}
    pending = None  # (step, device metrics) fetched one step late
    zero_since = None  # the first step of the current run of exactly-zero gradients
    skipped_since = None  # the zero_since whose periodic checkpoints were skipped (said once)

    def check(step_metrics, step):
        nonlocal zero_since
        fetched = jax.device_get(step_metrics)
        if not bool(fetched["finite"]):
            loss = f" (loss={float(fetched['loss'])})" if "loss" in fetched else ""
            raise NonFiniteLossError(
                f"loss or gradients became NaN/Inf at step {step}{loss}; "
                f"the run stopped without saving that state. Last good checkpoint: "
                f"{'none' if last_saved is None else f'step {last_saved}'} in {ckpt.directory}. "
                f"Lower optim.learning_rate or check the data."
            )
        norms = [float(v) for k, v in fetched.items() if k.endswith("grad_norm")]
        if norms and max(norms) == 0.0:
            zero_since = step if zero_since is None else zero_since
            if step - zero_since + 1 >= ZERO_GRADIENT_STEPS:
                # Step k's gradient is taken at the state after step k - 1: that state is already dead.
                before = [s for s in ckpt.finished_steps() if s < zero_since - 1]
                raise StalledError(
                    f"the gradients have been exactly zero since step {zero_since} ({step - zero_since + 1} "
                    f"steps): the networks stopped learning (saturated activations, e.g. after too large a "
                    f"learning rate); the run stopped. Last checkpoint from before: "
                    f"{f'step {before[-1]}' if before else 'none'} in {ckpt.directory}. Lower "
                    f"optim.learning_rate and train again."
                )
        else:
            zero_since = None
        history.append({k: float(v) for k, v in fetched.items()})
        return fetched

    def save(step):
        nonlocal last_saved
        ckpt.check()  # an earlier asynchronous save that failed stops the run here
        write_data_position(workdir, step, position, ckpt.all_steps())
        ckpt.save(step, state, force=True)
        last_saved = step

    def log_interval(step):
        means = {k: float(np.mean([h[k] for h in history])) for k in history[0] if k != "finite"}
        means["img_per_sec"] = progress.images_per_second
        means["data_skipped"] = position[1]  # this host's training skips up to this step
        writer.write_scalars(step, means)
        history.clear()
        return means

    try:
        with _Preemption() as preemption:
            t0 = time.perf_counter()
            if steps == 0 and last_saved is None:  # stages assembled from other runs, evaluated as they are
                save(0)
            for step in range(start + 1, steps + 1):
                batch = next(batches)
                position = positions.popleft()
                if train_cfg.transfer_guard:
                    with jax.transfer_guard("disallow"):
                        state, metrics = train_step(state, batch)
                else:
                    state, metrics = train_step(state, batch)
                if pending is not None:
                    check(*pending)
                pending = (metrics, step)
                ckpt.check()
                must_save = step % int(train_cfg.checkpoint_every) == 0 or step == steps
                if step % int(train_cfg.log_every) == 0 or must_save or preemption.requested:
                    check(*pending)
                    pending = None
                    means = log_interval(step)
                    progress.update(step, loss=means.get("loss", float("nan")))
                if must_save and zero_since is not None and step != steps and not preemption.requested:
                    # A state with exactly-zero gradients is dead: saving it would rotate out the checkpoints
                    # from before (max_to_keep), the ones StalledError points the user to.
                    if skipped_since != zero_since:
                        progress.note(f"no checkpoint at step {step}: the gradients have been exactly zero "
                                      f"since step {zero_since}; the checkpoints from before are kept")  # fmt: skip
                        skipped_since = zero_since
                elif must_save or preemption.requested:
                    save(step)
                if preemption.requested:
                    ckpt.wait()
                    progress.note(f"SIGTERM: saved a checkpoint at step {step} in {ckpt.directory}; "
                                  "run the same command again to resume.")  # fmt: skip
                    summary["preempted_at"] = step
                    break
                if int(train_cfg.eval_every) and step % int(train_cfg.eval_every) == 0 and step != steps:
                    results = evaluate(setup, state)
                    writer.write_scalars(step, {f"val/{k}": v for k, v in results.items() if np.isscalar(v)})
                    write_eval(workdir, "val", step, results)
                    progress.write(f"step {step}: " + _short(results))
            ckpt.wait()
            summary["train_seconds"] = time.perf_counter() - t0
        if "preempted_at" not in summary:
            results = evaluate(setup, state)
            writer.write_scalars(steps, {f"val/{k}": v for k, v in results.items() if np.isscalar(v)})
            summary["eval"] = results
            summary["eval_path"] = write_eval(workdir, "val", steps, results)
            progress.write(f"final (step {steps}): " + _short(results))
            if int(train_cfg.num_pictures):  # every process computes them, process 0 writes them
                write_pictures(setup, state, workdir, writer, steps, write=is_main)
    finally:
        close = getattr(stream, "close", None)
        if close:
            close()
        progress.close()
        ckpt.close()
        writer.close()
    summary["step"] = int(jax.device_get(state["step"]))
    summary["state"] = state
    return summary


def write_pictures(setup: Setup, state, workdir: str, writer, step: int, write: bool = True) -> list[str]:
    """Loss/metric curves and a sheet of predictions next to the ground truth, as PNGs in <workdir>/pictures.
    Every process must call it (the predictions span all devices); only those with `write` write files."""
    from jhuman import viz

    pictures = prediction_pictures(setup, state, int(setup.config.train.num_pictures))
    if not write:
        return []
    out = os.path.join(workdir, "pictures")
    os.makedirs(out, exist_ok=True)
    paths = [os.path.join(out, "curves.png")]
    viz.plot_curves(os.path.join(workdir, "metrics.jsonl"), paths[0])
    writer.write_images(step, pictures)
    for name, image in pictures.items():
        paths.append(os.path.join(out, f"{name}.png"))
        viz.save_png(paths[-1], image)
    return paths


def _short(results: dict) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in results.items() if isinstance(v, float))
