"""Test-wide settings: 8 fake CPU devices (sharding tests), quiet TF, a persistent compilation cache."""

import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.path.join(os.path.dirname(__file__), "..", ".cache", "jax"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tests/support.py
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory):
    """One cache folder for generated synthetic datasets, shared by every test of a session (worker)."""
    return str(tmp_path_factory.mktemp("synthetic_cache"))


UNGROUPED = pytest.StashKey[list]()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Under `--dist loadgroup` pytest-xdist marks each grouped test's id with '@<group>' so that one worker runs
    the whole group (and its expensive fixtures once). Record the tests where that silently stopped working."""
    if getattr(config.option, "loadgroup", False):
        config.stash[UNGROUPED] = [
            item.nodeid for item in items if item.get_closest_marker("xdist_group") and "@" not in item.nodeid
        ]


@pytest.fixture(scope="session", autouse=True)
def xdist_groups_hold(pytestconfig):
    """Fail every test, naming the cause, rather than train each grouped module's fixtures on every worker."""
    lost = pytestconfig.stash.get(UNGROUPED, [])
    if lost:
        pytest.fail(
            f"--dist loadgroup did not group {len(lost)} tests (e.g. {lost[0]}): this pytest/pytest-xdist pair "
            "spreads a group over the workers (pytest-dev/pytest-xdist#1386); install the versions pyproject.toml pins"
        )
