from dataclasses import dataclass

import pytest

from murmur import config as cfgmod
from murmur.config import knob
from murmur.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    lr: float = knob(3e-4, "learning rate")
    steps: int = knob(10, "steps")


@dataclass(frozen=True)
class Outer:
    name: str = knob("x", "a name")
    train: Inner = knob(Inner(), "training")
    tags: list[str] = knob([], "tags")
    limit: int | None = knob(None, "optional limit")


def test_load_toml_and_overrides(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('name = "run"\n[train]\nlr = 1e-3\n')
    cfg = cfgmod.load(Outer, p, ["train.steps=20", "tags=a,b", "limit=5"])
    assert cfg == Outer(name="run", train=Inner(lr=1e-3, steps=20), tags=["a", "b"], limit=5)


def test_unknown_key_suggests_closest(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'train.steps'"):
        cfgmod.load(Outer, None, ["train.stesp=3"])
    p = tmp_path / "c.toml"
    p.write_text("nmae = 'x'\n")
    with pytest.raises(ConfigError, match=r"c.toml: unknown config key 'nmae' \(did you mean 'name'"):
        cfgmod.load(Outer, p)


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match="train.steps: expected an integer"):
        cfgmod.load(Outer, None, ["train.steps=ten"])


def test_round_trip_toml(tmp_path):
    cfg = Outer(name='q"uote', train=Inner(lr=0.5, steps=3), tags=["x"], limit=None)
    cfgmod.dump_toml(cfg, tmp_path / "r.toml")
    assert cfgmod.load(Outer, tmp_path / "r.toml") == cfg


def test_optional_section_mirrors_its_dataclass(tmp_path):
    """The [model] section is ModelConfig's fields, each unset unless given: the shape is declared once."""
    import dataclasses

    from murmur.modelconfig import ModelConfig
    from murmur.train.config import ModelSection, TrainConfig

    names = [f.name for f in dataclasses.fields(ModelSection)]
    assert names == ["preset", *(f.name for f in dataclasses.fields(ModelConfig))]
    cfg = cfgmod.load(TrainConfig, None, ["model.dim=64", "model.tie_embeddings=false"])
    assert cfg.model.overrides() == {"dim": 64, "tie_embeddings": False}
    with pytest.raises(ConfigError, match="model.n_layers: expected an integer"):
        cfgmod.load(TrainConfig, None, ["model.n_layers=four"])
    cfgmod.dump_toml(cfg, tmp_path / "c.toml")  # unset fields are left out and load back unset
    assert cfgmod.load(TrainConfig, tmp_path / "c.toml") == cfg
    helps = {k: h for k, _, h in cfgmod.describe(TrainConfig)}
    assert helps["model.ffn_dim"].startswith(ModelConfig.__dataclass_fields__["ffn_dim"].metadata["help"])


def test_knobs_text_lists_every_knob_of_train_and_sft():
    from murmur.chat.sft import SFTConfig
    from murmur.train.config import TrainConfig

    for cls in (TrainConfig, SFTConfig):
        lines = cfgmod.knobs_text(cls).splitlines()
        assert [line.split()[0] for line in lines] == [k for k, _, _ in cfgmod.describe(cls)]
    sft = cfgmod.knobs_text(SFTConfig)
    assert "batch.tokens_per_step" in sft and "parallel.dp_shard" in sft and "guard.enabled" in sft
