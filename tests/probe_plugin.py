"""A stateful test plugin: perturbs the denoiser by an amount that grows with every call it sees.

If per-generation state were not reset, a second generation with the same seed would differ.
It records the CallInfo of every call so tests can check step counting.
"""

from __future__ import annotations

import dataclasses

import torch
from diffusers.hooks import ModelHook
from diffusers.hooks.hooks import BaseState, StateManager

from accel.config import PluginConfig, check_float
from accel.plugin import Plugin, register_plugin


@dataclasses.dataclass(frozen=True)
class ProbeConfig(PluginConfig):
    short_prefix = "probe"
    strength: float = 1e-2
    needs_steps: bool = False
    fail_in_attach: bool = False

    def __post_init__(self):
        check_float("ProbeConfig", "strength", self.strength, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class CacheProbeAConfig(ProbeConfig):
    short_prefix = "probeA"


@dataclasses.dataclass(frozen=True)
class CacheProbeBConfig(ProbeConfig):
    short_prefix = "probeB"


class _CountState(BaseState):
    def __init__(self):
        self.calls = 0

    def reset(self):
        self.calls = 0


class _ProbeHook(ModelHook):
    _is_stateful = True

    def __init__(self, plugin):
        super().__init__()
        self.plugin = plugin
        self.state = StateManager(_CountState)

    def post_forward(self, module, output):
        info = self.plugin.session.context.current
        if info is not None:
            if self.plugin.config.needs_steps:
                info.require_steps("ProbeConfig")
            if not self.plugin.seen or self.plugin.seen[-1] is not info:
                self.plugin.seen.append(info)
            state = self.state.get_state() if self.state._context is not None else _CountState()
            state.calls += 1
            return output + self.plugin.config.strength * state.calls
        return output * (1 + self.plugin.config.strength)

    def reset_state(self, module):
        self.state.reset()
        return module


@register_plugin
class ProbePlugin(Plugin):
    config_cls = ProbeConfig
    name = "probe"

    def __init__(self, config, session):
        super().__init__(config, session)
        self.seen = []
        self.generations = 0

    def attach(self):
        first_linear = next(m for m in self.session.denoiser.modules() if isinstance(m, torch.nn.Linear))
        self.session.register_hook(first_linear, _ProbeHook(self), self.hook_name())
        if self.config.fail_in_attach:
            raise RuntimeError("probe failure on purpose")

    def on_generation_start(self):
        self.seen = []
        self.generations += 1

    def stats(self):
        return {"calls_seen": len(self.seen)}


@register_plugin
class CacheProbeAPlugin(ProbePlugin):
    config_cls = CacheProbeAConfig
    name = "probeA"
    claims = frozenset({"block_outputs"})


@register_plugin
class CacheProbeBPlugin(ProbePlugin):
    config_cls = CacheProbeBConfig
    name = "probeB"
    claims = frozenset({"block_outputs"})
