"""A plugin's facts live beside it (accel.facts): the demo panels, accel tune's space, the default sweep
and the compatibility rules read them from the registry, so a new plugin touches none of their files."""

from __future__ import annotations

import dataclasses

import pytest

import accel
from accel.config import PluginConfig, check_float
from accel.facts import Field, Gene, PluginFacts
from accel.plugin import Plugin, register_plugin, unregister_plugin


@dataclasses.dataclass(frozen=True)
class ToyConfig(PluginConfig):
    short_prefix = "toy"
    strength: float = 0.5

    def __post_init__(self) -> None:
        check_float("ToyConfig", "strength", self.strength, 0.0, 1.0)


class ToyPlugin(Plugin):
    """Computes nothing; it exists to show where its facts appear."""

    config_cls = ToyConfig
    name = "toy"
    kinds = frozenset({"image_dit"})
    facts = PluginFacts(
        key="toy",
        title="Toy",
        blurb="a plugin made in a test",
        fields=(Field("strength", "strength", "float", 0.0, 1.0, 0.1),),
        presets={"safe": {"strength": 0.2}, "balanced": {"strength": 0.5}, "fast": {"strength": 0.9}},
        identity={"strength": 0.0},
        genes=(Gene("strength", (0.25, 0.75)),),
        build=lambda knobs, steps: ToyConfig(strength=knobs["strength"]),
        sweep={"sd3-shapes": [{"type": "ToyConfig", "strength": 0.25}]},
        conflicts={"ras": "the toy and RAS both want the image tokens"},
        order=50,
    )

    def attach(self) -> None:
        pass


@pytest.fixture
def toy():
    register_plugin(ToyPlugin)
    try:
        yield ToyPlugin
    finally:
        unregister_plugin(ToyPlugin)


def test_a_toy_plugin_appears_in_the_demo_the_tune_space_the_sweep_and_the_rules(toy):
    from accel.api import adapter_of
    from accel.app import presets
    from accel.compat import check_compatible
    from accel.evaluation.defaults import default_specs
    from accel.pipelines.testing import tiny_pipeline
    from accel.tuning.stack_space import StackSpace

    # the demo: a panel with the plugin's fields and presets, turned into its config
    spec = presets.by_key()["toy"]
    assert spec.title == "Toy" and spec.defaults("fast") == {"strength": 0.9}
    assert presets.build_configs({"toy": {"strength": 0.3}}) == [ToyConfig(strength=0.3)]
    assert presets.support(adapter_of(tiny_pipeline("sd3").pipe))["toy"] is None
    # accel tune: a group with the plugin's genes, decoded to its config
    space = StackSpace(adapter_of(tiny_pipeline("sd3").pipe), 20, guided=True)
    assert "toy" in space.plugin_names and space.describe()["toy.strength"] == [0.25, 0.75]
    steps, configs = space.decode(space.encode(10, {"toy": {"strength": 0.75}}))
    assert steps == 10 and configs == [ToyConfig(strength=0.75)]
    # the default sweep: the plugin's entry on the model its facts name
    sd3 = next(s for s in default_specs() if s.model == "sd3-shapes")
    assert {"type": "ToyConfig", "strength": 0.25} in sd3.configs
    # the compatibility rules: the conflict its facts state, from either side
    for pair in ([ToyConfig(), accel.RASConfig()], [accel.RASConfig(), ToyConfig()]):
        with pytest.raises(accel.IncompatiblePluginsError, match="both want the image tokens"):
            check_compatible(pair)
    check_compatible([ToyConfig(), accel.BlockCacheConfig()])


def test_without_the_toy_nothing_lists_it():
    from accel.app import presets
    from accel.evaluation.defaults import default_specs

    assert "toy" not in presets.by_key()
    assert all("ToyConfig" not in str(s.configs) for s in default_specs())


def test_a_panel_needs_every_preset():
    with pytest.raises(accel.ConfigError, match=r"needs the presets \['safe', 'balanced', 'fast'\]"):
        PluginFacts(key="x", title="X", fields=(Field("a", "a", "int", 0, 1),), presets={"safe": {"a": 0}})
