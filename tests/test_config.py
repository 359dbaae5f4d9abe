"""One config system: presets as data, overrides, and errors that name the field."""
import pytest

from seds.config import ConfigError, load_config, model_config, parse_overrides, to_dict, from_dict


def test_presets_load_and_roundtrip():
    for name in ("paper", "small", "tiny"):
        cfg = model_config(name)
        again = from_dict(type(cfg), to_dict(cfg))
        assert again == cfg
    paper = model_config("paper")
    assert paper.dim == 512 and paper.pose_transformer.layers == 12 and paper.pose_transformer.width == 768
    assert paper.pose.widths == (128, 128, 256, 512) and paper.fusion.layers == 2
    assert paper.max_clips == 64 and paper.text.max_words == 32


def test_overrides_parse_yaml_values():
    cfg = model_config("small", ["fusion.kind=add-mlp", "streams=[pose]", "pose.extra_parts=[face, mouth]"])
    assert cfg.fusion.kind == "add-mlp" and cfg.streams == ("pose",)
    assert cfg.pose.extra_parts == ("face", "mouth")
    assert parse_overrides(["a.b=3", "a.c=x"]) == {"a": {"b": 3, "c": "x"}}


@pytest.mark.parametrize("override, field", [
    (["fusion.kind=sum"], "fusion.kind"),
    (["pose_transformer.heads=5"], "pose_transformer.heads"),
    (["pose.temporal_kernel=4"], "pose.temporal_kernel"),
    (["streams=[depth]"], "streams"),
    (["fusion.num_keys=[5, 3, 1]"], "fusion.num_keys"),
    (["pose.widths=[]"], "pose.widths"),
    (["text.max_words=1"], "text.max_words"),
    (["colour=blue"], "colour"),
    (["dim=abc"], "dim"),
])
def test_bad_model_config_names_the_field(override, field):
    with pytest.raises(ConfigError) as e:
        model_config("small", override)
    assert str(e.value).startswith(field), str(e.value)


def test_bad_training_config_names_the_field():
    with pytest.raises(ConfigError, match=r"^train\.batch_size"):
        load_config(None, ["train.batch_size=1"])
    with pytest.raises(ConfigError, match=r"^loss\.alpha"):
        load_config(None, ["loss.alpha=-1"])
    with pytest.raises(ConfigError, match="not found"):
        load_config("no/such/file.yaml")


def test_former_train_option_names_are_read_as_the_current_ones():
    """``grad_scale: official`` / ``sampler: official`` (before "official" was kept for the model variant)."""
    old = load_config(None, ["train.grad_scale=official", "train.sampler=official"])
    new = load_config(None, ["train.grad_scale=ddp_average", "train.sampler=per_sentence"])
    assert (old.train.grad_scale, old.train.sampler) == ("ddp_average", "per_sentence") and old == new
    assert to_dict(old)["train"]["grad_scale"] == "ddp_average"
    with pytest.raises(ConfigError, match=r"^train\.sampler"):
        load_config(None, ["train.sampler=authors"])


def test_model_construction_rejects_bad_config():
    from seds.model import SEDS
    cfg = model_config("tiny")
    cfg.fusion.heads = 3        # mutated after validation: model construction must still fail clearly
    with pytest.raises(ValueError, match="divisible"):
        SEDS(cfg)


def test_absurd_sizes_and_a_non_model_text_directory_name_the_field(tmp_path):
    """Issue 15: model.dim=200000 gave a raw RuntimeError, model.text.model=/etc an error without the field."""
    with pytest.raises(ConfigError, match=r"^model\.dim: must be in \[1, 8192\], got 200000"):
        load_config(None, ["model.dim=200000"])
    with pytest.raises(ConfigError, match=r"^model\.text\.hash_buckets"):
        load_config(None, ["model.text.hash_buckets=100000000"])
    from seds.model import SEDS
    not_a_model = tmp_path / "etc"
    not_a_model.mkdir()
    (not_a_model / "passwd").write_text("root:x:0:0\n")
    for name in (str(not_a_model), f"clip:{not_a_model}", str(tmp_path / "absent")):
        cfg = model_config("tiny", [f"text.model={name}"])
        with pytest.raises(FileNotFoundError, match=r"^model\.text\.model="):
            SEDS(cfg)
    (not_a_model / "config.json").write_text("{}")          # looks like a model directory, is not one
    with pytest.raises(ValueError, match=r"^model\.text\.model=.*cannot load a text model"):
        SEDS(model_config("tiny", [f"text.model={not_a_model}"]))
