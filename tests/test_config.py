import json
import os

import pytest

from jhuman import config as config_lib

PARSING = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "parsing.py")


def test_arg_choices_change_the_config():
    tiny = config_lib.load_config(f"{PARSING}:size=tiny,data=synthetic")
    full = config_lib.load_config(f"{PARSING}:size=full,data=lip,model=deeplab_vgg")
    assert tiny.model.width == 16 and full.model.width == 64 and tiny.model.rates == (1, 2, 3, 4)
    assert full.model.backbone == "vgg16" and full.model.head == "largefov"
    assert full.data.crop_size == 321 and full.optim.lr_multipliers[0] == ("classifier/", 10.0)
    attention = config_lib.load_config(f"{PARSING}:model=attention,ssl=on,size=full")
    assert attention.model.name == "attention" and attention.model.backbone == "vgg16"
    # The paper's schedule: 30 epochs of LIP (batch 10) without SSL, then 20 epochs with it.
    assert attention.ssl.enabled and attention.ssl.start_step == 91_386 and attention.train.steps == 152_310


def test_bad_arg_lists_valid_keys():
    with pytest.raises(config_lib.ConfigError, match=r"valid: \['data', 'model', 'size', 'ssl'\]"):
        config_lib.load_config(f"{PARSING}:colour=red")
    with pytest.raises(config_lib.ConfigError, match="not one of"):
        config_lib.load_config(f"{PARSING}:size=huge")


def test_overrides_typed():
    c = config_lib.load_config(f"{PARSING}:size=tiny")
    config_lib.apply_overrides(
        c,
        [
            "--config.train.steps=7",
            "config.optim.learning_rate=1",
            "model.norm=frozen",
            "train.progress_bar=false",
            "data.scales=(0.5, 1.0)",
        ],
    )
    assert c.train.steps == 7 and c.optim.learning_rate == 1.0 and isinstance(c.optim.learning_rate, float)
    assert c.model.norm == "frozen" and c.train.progress_bar is False and c.data.scales == (0.5, 1.0)


def test_unknown_key_names_valid_keys():
    c = config_lib.load_config(f"{PARSING}:size=tiny")
    with pytest.raises(config_lib.ConfigError) as e:
        config_lib.apply_overrides(c, ["train.stepz=5"])
    assert "'stepz'" in str(e.value) and "'steps'" in str(e.value) and "'batch_size'" in str(e.value)
    with pytest.raises(config_lib.ConfigError, match="valid keys"):
        config_lib.apply_overrides(c, ["nosuchsection.x=1"])


def test_wrong_type_is_an_error():
    c = config_lib.load_config(f"{PARSING}:size=tiny")
    with pytest.raises(config_lib.ConfigError, match="expected int"):
        config_lib.apply_overrides(c, ["train.steps=many"])
    with pytest.raises(config_lib.ConfigError, match="expected a bool"):
        config_lib.apply_overrides(c, ["train.progress_bar=maybe"])
    with pytest.raises(config_lib.ConfigError, match="section"):
        config_lib.apply_overrides(c, ["train=3"])


def test_saved_config_round_trips(tmp_path):
    c = config_lib.load_config(f"{PARSING}:size=tiny")
    config_lib.apply_overrides(c, ["train.steps=9"])
    config_lib.save_config(c, str(tmp_path))
    json.loads((tmp_path / "config.json").read_text())
    back = config_lib.load_saved_config(str(tmp_path))
    assert back.train.steps == 9 and back.data.scales == c.data.scales
    assert back.optim.lr_multipliers == c.optim.lr_multipliers
    with pytest.raises(config_lib.ConfigError, match="config.json"):
        config_lib.load_saved_config(str(tmp_path / "nothing"))
