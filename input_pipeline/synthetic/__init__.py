"""Procedurally rendered people: the built-in default data of every jhuman task (numpy + OpenCV only).

Rendering (pure functions of (seed, index), via np.random.default_rng([seed, index])):
  render_person_crop(seed, index, size=(128, 256)) -> Scene   LIP-style crop: one large labelled person
  render_scene(seed, index, size=(128, 192), max_people=4, crowd=False) -> Scene   several people, occlusion
  sample_person(rng, scale, center, kind=None) -> PersonSpec; compose(background, people, rng) -> Scene
Datasets in each task's real on-disk format:
  write_dataset(task, out_dir, num, seed=0, size=(128, 192), val_fraction=0.2) -> {'train': n, 'val': n}
  ensure_dataset(task, cache_dir, num, seed=0, size=(128, 192), val_fraction=0.2) -> path (cached)
  TASKS: task name -> writer ('parsing' = the LIP layout, 'personlab' = COCO, 'matting' = fg/alpha/bg folders,
  'posewarp' = pose videos: frames/<video>/<k>.jpg + info/<video>.mat; `num` counts videos).
Throughput: `python -m input_pipeline.synthetic bench`.
"""

from input_pipeline.synthetic.datasets import (
    TASKS,
    VAL_INDEX_OFFSET,
    TaskWriter,
    dataset_name,
    ensure_dataset,
    write_dataset,
)
from input_pipeline.synthetic.lip_format import sample_id
from input_pipeline.synthetic.scene import (
    PersonSpec,
    Scene,
    compose,
    render_person_crop,
    render_scene,
    sample_person,
)

__all__ = [
    "TASKS",
    "VAL_INDEX_OFFSET",
    "TaskWriter",
    "dataset_name",
    "ensure_dataset",
    "write_dataset",
    "sample_id",
    "PersonSpec",
    "Scene",
    "compose",
    "render_person_crop",
    "render_scene",
    "sample_person",
]
