"""The public names of DESIGN.md ("Public API that scripts, ablations and benchmarks rely on") import from their
documented modules, with the documented sizes."""

import importlib

import pytest

PUBLIC_FUNCTIONS = [
    ("jhuman.ops.personlab", "decode"),
    ("jhuman.ops.personlab", "decode_options"),
    ("jhuman.ops.ssl", "joint_centers"),
    ("jhuman.ops.ssl", "joint_heatmaps"),
    ("jhuman.metrics.parsing", "confusion_matrix"),
    ("jhuman.metrics.parsing", "scores"),
]


@pytest.mark.parametrize("module, name", PUBLIC_FUNCTIONS)
def test_public_functions_are_importable_and_callable(module, name):
    assert callable(getattr(importlib.import_module(module), name))


def test_personlab_constants_have_the_documented_sizes():
    from jhuman.ops.personlab import DIRECTED_EDGES, EDGES, KEYPOINTS

    assert len(KEYPOINTS) == 17 and KEYPOINTS[0] == "nose"  # COCO order
    assert len(EDGES) == 16 and len(DIRECTED_EDGES) == 32
    assert set(DIRECTED_EDGES) == {tuple(e) for e in EDGES} | {tuple(e)[::-1] for e in EDGES}


def test_personlab_decode_stays_the_function_next_to_its_submodules():
    # The package's submodules (decoder, grouping, ...) must not shadow the public function `decode`.
    personlab = importlib.import_module("jhuman.ops.personlab")
    importlib.import_module("jhuman.ops.personlab.decoder")
    importlib.import_module("jhuman.ops.personlab.reference")
    assert callable(personlab.decode) and personlab.decode.__module__ == "jhuman.ops.personlab.decoder"
    for name in personlab.__all__:
        assert hasattr(personlab, name)
