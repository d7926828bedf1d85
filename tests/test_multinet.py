"""The one trainer carrying two networks: a toy GAN (generator + discriminator, each with batch norm) with its
own alternating update, parameter groups (frozen, step windows), EMA over one group, and stage chaining."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from support import Preempting

from jhuman import checkpoint, sharding, stages, tasks, train
from jhuman import config as config_lib
from jhuman.update import compute_gradients

BATCH = 16


class Generator(nn.Module):
    @nn.compact
    def __call__(self, z, train: bool = False):
        x = nn.Dense(8)(z)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        return nn.Dense(2)(nn.relu(x))


class Discriminator(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Dense(8)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        return nn.Dense(1)(nn.relu(x))[:, 0]


def bce(logits, label):
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, label)))


class Stats:
    skipped = 0


class Batches:
    """Example i is drawn from its own seed: the stream restarts exactly at any index (resume)."""

    def __init__(self, start, batch, seed):
        self.index, self.batch, self.seed = start, batch, seed

    def __iter__(self):
        return self

    def __next__(self):
        rows = [np.random.default_rng((self.seed, i)) for i in range(self.index, self.index + self.batch)]
        self.index += self.batch
        return {
            "real": np.stack([r.normal([2.0, -1.0], 0.3, 2) for r in rows]).astype(np.float32),
            "z": np.stack([r.normal(size=4) for r in rows]).astype(np.float32),
        }

    @property
    def next_position(self):
        return self.index


class MeanScore:
    """The discriminator's mean logit on real points (enough to exercise the trainer's evaluation)."""

    def __init__(self, task):
        self.task = task

    def init(self):
        return {"sum": jnp.zeros(()), "count": jnp.zeros(())}

    def update(self, acc, variables, batch):
        logits = self.task.disc.apply(
            {"params": variables["params"]["disc"], "batch_stats": variables["batch_stats"]["disc"]},
            batch["real"],
        )
        return {"sum": acc["sum"] + jnp.sum(logits), "count": acc["count"] + logits.shape[0]}

    def finalize(self, acc):
        return {"real_logit": float(acc["sum"] / acc["count"])}


class ToyGanTask:
    """Parameters {'gen', 'disc'}; `update`: `disc_steps` discriminator updates, then one generator update."""

    def __init__(self, config):
        self.config = config
        self.gen, self.disc = Generator(), Discriminator()
        self.data_stats = Stats()

    def init(self, rng):
        g_rng, d_rng = jax.random.split(rng)
        g = self.gen.init(g_rng, jnp.zeros((1, 4)))
        d = self.disc.init(d_rng, jnp.zeros((1, 2)))
        return {
            "params": {"gen": g["params"], "disc": d["params"]},
            "batch_stats": {"gen": g["batch_stats"], "disc": d["batch_stats"]},
        }

    def _fake(self, params, stats, z, train):
        variables = {"params": params["gen"], "batch_stats": stats["gen"]}
        if not train:
            return self.gen.apply(variables, z), stats["gen"]
        fake, new = self.gen.apply(variables, z, train=True, mutable=["batch_stats"])
        return fake, new["batch_stats"]

    def _score(self, params, stats, x):
        variables = {"params": params["disc"], "batch_stats": stats["disc"]}
        logits, new = self.disc.apply(variables, x, train=True, mutable=["batch_stats"])
        return logits, new["batch_stats"]

    def disc_loss(self, params, model_state, batch, rng):
        stats = model_state["batch_stats"]
        fake, _ = self._fake(params, stats, batch["z"], train=False)
        both, new_disc = self._score(params, stats, jnp.concatenate([batch["real"], fake]))
        real, fake = both[: len(batch["real"])], both[len(batch["real"]) :]
        loss = bce(real, 1.0) + bce(fake, 0.0)
        return loss, ({"d_loss": loss}, {"batch_stats": {**stats, "disc": new_disc}})

    def gen_loss(self, params, model_state, batch, rng):
        stats = model_state["batch_stats"]
        fake, new_gen = self._fake(params, stats, batch["z"], train=True)
        logits, _ = self._score(params, stats, fake)  # the discriminator's statistics are not kept here
        loss = bce(logits, 1.0)
        return loss, ({"g_loss": loss}, {"batch_stats": {**stats, "gen": new_gen}})

    def update(self, state, batch, rng, optimizer):
        params, opt_state, model_state = state["params"], state["opt_state"], state["model_state"]
        for k in range(int(self.config.toy.disc_steps)):
            _, d_metrics, model_state, grads = compute_gradients(
                self.disc_loss, params, model_state, batch, jax.random.fold_in(rng, k)
            )
            params, opt_state = optimizer.apply(grads, opt_state, params, state["step"], groups=("disc",))
        _, g_metrics, model_state, grads = compute_gradients(self.gen_loss, params, model_state, batch, rng)
        params, opt_state = optimizer.apply(grads, opt_state, params, state["step"], groups=("gen",))
        metrics = {**d_metrics, **g_metrics, "loss": d_metrics["d_loss"] + g_metrics["g_loss"]}
        return {**state, "params": params, "opt_state": opt_state, "model_state": model_state}, metrics

    def train_batches(self, start_index, per_host_batch, process_index, process_count):
        return Batches(start_index, per_host_batch, int(self.config.seed))

    def eval_batches(self, split, per_host_batch, process_index, process_count):
        batches = Batches(10_000, per_host_batch, 99)
        return (dict(next(batches), mask=np.ones(per_host_batch, bool)) for _ in range(2))

    def evaluator(self):
        return MeanScore(self)


def toy_config(seed=0, steps=6, **overrides):
    c = ml_collections.ConfigDict()
    c.task = "toy_gan"
    c.seed = seed
    c.toy = ml_collections.ConfigDict({"disc_steps": 2})
    c.train = config_lib.section(
        config_lib.TRAIN, steps=steps, batch_size=BATCH, log_every=1, eval_every=0, checkpoint_every=3,
        num_pictures=0, progress_bar=False,
    )  # fmt: skip
    c.optim = config_lib.section(
        config_lib.OPTIM,
        name="adam",
        learning_rate=0.01,
        schedule="constant",
        groups={"gen": {"pattern": "^gen/"}, "disc": {"pattern": "^disc/", "learning_rate": 0.02}},
    )
    init = {k.split("__")[1]: overrides.pop(k) for k in list(overrides) if k.startswith("init__")}
    c.init = config_lib.section(config_lib.INIT, **init)  # a tuple of sources where the default is a string
    c.eval = ml_collections.ConfigDict({"batch_size": BATCH})
    c.mesh = config_lib.section(config_lib.MESH)
    c.distributed = config_lib.section(config_lib.DISTRIBUTED)
    c.lock()
    for key, value in overrides.items():
        node = c
        *parents, leaf = key.split("__")
        for p in parents:
            node = node[p]
        with node.unlocked():
            node[leaf] = value
    return c


@pytest.fixture(autouse=True)
def toy_task(monkeypatch):
    monkeypatch.setitem(tasks.REGISTRY, "toy_gan", ToyGanTask)


def host(tree):
    return jax.tree.map(np.asarray, jax.device_get(tree))


def run_steps(config, n, state=None):
    setup = train.build(config)
    step = train.make_train_step(setup)
    if state is None:
        state = jax.jit(setup.init_state, out_shardings=setup.state_shardings)(jax.random.key(config.seed))
    batches = setup.task.train_batches(0, BATCH, 0, 1)
    history = []
    for _ in range(n):
        state, metrics = step(state, sharding.to_global(next(batches), setup.mesh))
        history.append(host(metrics))
    return setup, state, history


def assert_trees_equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, host(a), host(b))


def subtree_changed(a, b):
    return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(host(a)), jax.tree.leaves(host(b))))


def group_state(opt_state, name):
    return opt_state.inner_states[name]


def test_alternating_updates_give_the_same_losses_on_one_and_eight_devices():
    losses = {}
    for devices in (1, 8):
        # SGD: Adam's normalisation would amplify the float rounding of the two reduction orders.
        _, _, history = run_steps(toy_config(mesh__data=devices, optim__name="sgd"), 3)
        losses[devices] = [(h["d_loss"], h["g_loss"]) for h in history]
    np.testing.assert_allclose(losses[8], losses[1], rtol=1e-5)
    assert losses[1][0] != losses[1][2]  # both networks really trained


def test_frozen_discriminator_stays_bit_for_bit():
    config = toy_config()
    with config.optim.unlocked():
        config.optim.groups.disc.frozen = True
    setup, state0, _ = run_steps(config, 0)
    init = host(state0)
    _, state, history = run_steps(config, 3, jax.device_put(init, setup.state_shardings))
    assert_trees_equal(state["params"]["disc"], init["params"]["disc"])
    assert_trees_equal(
        state["model_state"]["batch_stats"]["disc"], init["model_state"]["batch_stats"]["disc"]
    )
    assert_trees_equal(group_state(state["opt_state"], "disc"), group_state(init["opt_state"], "disc"))
    assert subtree_changed(state["params"]["gen"], init["params"]["gen"])
    assert subtree_changed(
        state["model_state"]["batch_stats"]["gen"], init["model_state"]["batch_stats"]["gen"]
    )
    assert np.isfinite(history[-1]["g_loss"])


def test_step_window_switches_the_discriminator_on_and_keeps_its_adam_moments_until_then():
    config = toy_config(steps=10)
    with config.optim.unlocked():
        config.optim.groups.disc.start_step = 2
    setup, state, _ = run_steps(config, 0)
    init = host(state)
    step = train.make_train_step(setup)
    batches = setup.task.train_batches(0, BATCH, 0, 1)
    seen = []
    for _ in range(3):
        state, metrics = step(state, sharding.to_global(next(batches), setup.mesh))
        seen.append(
            (host(state["params"]["disc"]), host(group_state(state["opt_state"], "disc")), host(metrics))
        )
    # Steps 0 and 1: generator only (the discriminator's parameters, statistics and Adam moments unchanged).
    for params, opt, metrics in seen[:2]:
        assert_trees_equal(params, init["params"]["disc"])
        assert_trees_equal(opt, group_state(init["opt_state"], "disc"))
        assert metrics["learning_rate/disc"] == 0.0
    # Step 2: switched on; its Adam count is 2 (two discriminator updates a step), counted from the window.
    assert subtree_changed(seen[2][0], init["params"]["disc"])
    counts = [int(x) for x in jax.tree.leaves(seen[2][1]) if np.ndim(x) == 0]
    assert counts and set(counts) == {2}
    assert seen[2][2]["learning_rate/disc"] == pytest.approx(0.02)


def test_ema_covers_only_its_group():
    config = toy_config(train__ema_decay=0.5, train__ema_group="gen")
    _, state, _ = run_steps(config, 2)
    assert_trees_equal(state["ema_params"]["disc"], state["params"]["disc"])
    assert subtree_changed(state["ema_params"]["gen"], state["params"]["gen"])
    assert train.eval_variables(state)["params"] is state["ema_params"]


def test_ema_of_a_run_started_from_another_trains(tmp_path):
    # Parameters set at the start (another run's, pretrained) were shared with ema_params, and the step
    # donating both failed ("Attempt to donate the same buffer twice").
    train.run(toy_config(seed=0, steps=2), str(tmp_path / "a"))
    chained = toy_config(seed=1, steps=3, train__ema_decay=0.5, init__from_workdir=str(tmp_path / "a"),
                         init__from_pattern="^disc/")  # fmt: skip
    state = train.run(chained, str(tmp_path / "b"))["state"]
    assert subtree_changed(state["ema_params"]["gen"], state["params"]["gen"])


def test_group_errors_list_the_paths():
    bad = toy_config()
    with bad.optim.unlocked():
        bad.optim.groups.gen.pattern = "^nothing/"
    with pytest.raises(
        ValueError, match=r"no group: \['gen/BatchNorm_0/bias'.*match no parameter: \['gen'\]"
    ):
        train.build(bad)
    overlap = toy_config()
    with overlap.optim.unlocked():
        overlap.optim.groups.gen.pattern = "Dense"
    with pytest.raises(ValueError, match=r"two or more groups: \[.disc/Dense_0/bias \(disc, gen\)"):
        train.build(overlap)
    unknown = toy_config()
    with unknown.optim.unlocked():
        unknown.optim.groups.gen.lr = 0.1
    with pytest.raises(
        ValueError, match=r"optim.groups.gen: unknown keys \['lr'\]; valid: .*'learning_rate'"
    ):
        train.build(unknown)


def test_stage_chaining_takes_the_chosen_subtree_and_resumes_exactly(tmp_path, monkeypatch):
    a = train.run(toy_config(seed=0, steps=4), str(tmp_path / "a"))
    a_state = host(a["state"])
    chained = dict(train__steps=6, init__from_workdir=str(tmp_path / "a"), init__from_pattern="^disc/")

    # B's starting point: A's discriminator (parameters and statistics), its own generator at init.
    b_config = toy_config(seed=1, **chained)
    setup = train.build(b_config)
    fresh = host(jax.jit(setup.init_state, out_shardings=setup.state_shardings)(jax.random.key(1)))
    started, report = stages.restore_sources(
        jax.device_put(fresh, setup.state_shardings), setup.state_shardings, stages.sources(b_config.init)
    )
    assert_trees_equal(started["params"]["disc"], a_state["params"]["disc"])
    assert_trees_equal(
        started["model_state"]["batch_stats"]["disc"], a_state["model_state"]["batch_stats"]["disc"]
    )
    assert_trees_equal(started["params"]["gen"], fresh["params"]["gen"])
    assert_trees_equal(started["opt_state"], fresh["opt_state"])
    assert sorted(report.restored) == sorted(
        ["params/disc/Dense_0/bias", "params/disc/Dense_0/kernel", "params/disc/Dense_1/bias",
         "params/disc/Dense_1/kernel", "params/disc/BatchNorm_0/bias", "params/disc/BatchNorm_0/scale",
         "model_state/batch_stats/disc/BatchNorm_0/mean", "model_state/batch_stats/disc/BatchNorm_0/var"]
    )  # fmt: skip
    assert "params/gen/Dense_0/kernel" in report.left_at_init and report.unmatched == []
    assert "8 leaves restored" in str(report)

    straight = train.run(b_config, str(tmp_path / "b_straight"))
    original = ToyGanTask.train_batches
    monkeypatch.setattr(
        ToyGanTask, "train_batches", lambda self, *args: Preempting(original(self, *args), at=4)
    )
    first = train.run(b_config, str(tmp_path / "b_resumed"))
    monkeypatch.setattr(ToyGanTask, "train_batches", original)
    preempted = first["preempted_at"]  # the prefetcher runs ahead of the steps
    assert 1 <= preempted < 6
    # The resumed run reads its own checkpoint only: A's workdir may be gone by then.
    os.rename(tmp_path / "a", tmp_path / "a_moved")
    second = train.run(b_config, str(tmp_path / "b_resumed"))
    assert second["start_step"] == preempted and second["step"] == 6
    assert_trees_equal(second["state"]["params"], straight["state"]["params"])
    assert_trees_equal(second["state"]["opt_state"], straight["state"]["opt_state"])


def test_several_sources_and_bad_sources(tmp_path):
    train.run(toy_config(seed=0, steps=3), str(tmp_path / "a"))
    train.run(toy_config(seed=5, steps=3), str(tmp_path / "c"))
    a = checkpoint.Checkpoints(str(tmp_path / "a"))
    config = toy_config(
        seed=1, init__from_workdir=((str(tmp_path / "a"), "^gen/", 0), (str(tmp_path / "c"), "^disc/", 3))
    )
    setup = train.build(config)
    fresh = jax.jit(setup.init_state, out_shardings=setup.state_shardings)(jax.random.key(1))
    started, report = stages.restore_sources(fresh, setup.state_shardings, stages.sources(config.init))
    a_state = a.restore(setup.abstract_state, setup.state_shardings)
    c_state = checkpoint.Checkpoints(str(tmp_path / "c")).restore(setup.abstract_state, setup.state_shardings)
    assert_trees_equal(started["params"]["gen"], a_state["params"]["gen"])
    assert_trees_equal(started["params"]["disc"], c_state["params"]["disc"])
    assert report.left_at_init == []
    # Restored leaves carry the new run's shardings.
    assert all(
        x.sharding == s
        for x, s in zip(jax.tree.leaves(started["params"]), jax.tree.leaves(setup.state_shardings["params"]))
    )

    missing = toy_config(init__from_workdir=str(tmp_path / "a"), init__from_step=7)
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at step 7 .*available steps: \[3\]"):
        stages.restore_sources(fresh, setup.state_shardings, stages.sources(missing.init))
    both = toy_config(init__from_workdir=((str(tmp_path / "a"), "", 0), (str(tmp_path / "c"), "^disc/", 0)))
    with pytest.raises(ValueError, match="is selected by"):
        stages.restore_sources(fresh, setup.state_shardings, stages.sources(both.init))
    nowhere = toy_config(init__from_workdir=str(tmp_path / "nowhere"))
    with pytest.raises(
        FileNotFoundError, match="no checkpoints folder .*nowhere/checkpoints: is .* a training run"
    ):
        stages.restore_sources(fresh, setup.state_shardings, stages.sources(nowhere.init))


def test_zero_steps_assembles_stages_from_other_runs_and_evaluates_them(tmp_path):
    train.run(toy_config(seed=0, steps=3), str(tmp_path / "a"))
    with pytest.raises(config_lib.ConfigError, match="train.steps=0 must be an integer >= 1"):
        train.run(toy_config(steps=0), str(tmp_path / "alone"))
    summary = train.run(
        toy_config(seed=1, steps=0, init__from_workdir=str(tmp_path / "a")), str(tmp_path / "b")
    )
    assert summary["step"] == 0 and "real_logit" in summary["eval"]
    assert checkpoint.Checkpoints(str(tmp_path / "b")).all_steps() == [0]
    a = checkpoint.Checkpoints(str(tmp_path / "a"))
    setup = train.build(toy_config(seed=0, steps=3))
    assert_trees_equal(
        summary["state"]["params"], a.restore(setup.abstract_state, setup.state_shardings)["params"]
    )
