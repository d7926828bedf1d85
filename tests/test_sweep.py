"""The sweep table: its columns come from the variants' tasks."""

import os

from jhuman import config as config_lib
from jhuman import sweep

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def config(name):
    return config_lib.load_config(os.path.join(CONFIGS, f"{name}.py:size=tiny"))


def test_personlab_rows_show_ap_columns():
    columns = sweep.task_columns([config("personlab")])
    row = {
        "variant": "r101",
        "keypoints/AP": 0.1234,
        "keypoints/AP50": 0.4,
        "segm/AP": 0.2,
        "num_images": 48.0,
    }
    table = sweep.format_table([row], columns).splitlines()
    assert table[0] == "| variant | kp AP | kp AP50 | segm AP | segm AP50 |"
    assert table[2] == "| r101 | 12.34 | 40.00 | 20.00 | - |"


def test_columns_of_several_tasks_are_listed_once_each_in_order():
    columns = sweep.task_columns([config("parsing"), config("personlab"), config("parsing")])
    titles = [title for _, title, _ in columns]
    assert titles == ["pixel acc", "mean acc", "mIoU", "kp AP", "kp AP50", "segm AP", "segm AP50"]
