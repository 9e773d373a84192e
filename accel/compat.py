"""Which plugins compose and which cannot, with the reason.

Each plugin declares the resources it takes over on a denoiser (``Plugin.claims``). Two plugins
claiming the same exclusive resource cannot be attached together; a few pairs that touch different
resources still conflict, which a plugin's facts state (``PluginFacts.conflicts``: the other plugin's
name and the reason). The core names no plugin.

Resources:
    ``block_outputs``: replaces the outputs of blocks or block components with cached values.
    ``attention_processor``: installs its own attention processors.
    ``cfg_batch``: decides which CFG branches the denoiser evaluates.
    ``token_set``: changes which tokens the transformer processes.
    ``ffn_structure``: rewrites feed-forward layers.
    ``timesteps``: chooses the levels the scheduler steps through.
    ``scheduler``: replaces the pipeline's scheduler (the solver).
"""

from __future__ import annotations

from collections.abc import Sequence

from .config import PluginConfig
from .errors import IncompatiblePluginsError
from .plugin import plugin_for

#: Why two plugins cannot share a resource.
EXCLUSIVE_RESOURCES: dict[str, str] = {
    "block_outputs": (
        "both would replace the same blocks' outputs with cached values, so each cache would store the other's "
        "approximations"
    ),
    "attention_processor": (
        "both install their own attention processors on the same attention layers; only one can run"
    ),
    "cfg_batch": "both decide which classifier-free-guidance branches the denoiser evaluates",
    "token_set": "both change which tokens the transformer processes",
    "ffn_structure": "both rewrite the same feed-forward layers",
    "timesteps": "both choose the levels the scheduler steps through",
    "scheduler": "both replace the pipeline's scheduler",
}


def pair_conflict(plugin_a: type, plugin_b: type) -> str | None:
    """Why two plugins that claim different resources still conflict, as either one's facts say."""
    for one, other in ((plugin_a, plugin_b), (plugin_b, plugin_a)):
        if one.facts is not None and other.name in one.facts.conflicts:
            return one.facts.conflicts[other.name]
    return None


def check_compatible(configs: Sequence[PluginConfig]) -> None:
    """Raise :class:`IncompatiblePluginsError` if any two configs cannot be attached together."""
    seen_types: dict[type, PluginConfig] = {}
    for config in configs:
        if type(config) in seen_types:
            raise IncompatiblePluginsError(
                f"two {type(config).__name__} configs given ({seen_types[type(config)]} and {config}); "
                "attach one config per plugin"
            )
        seen_types[type(config)] = config
    plugins = [(config, plugin_for(config)) for config in configs]
    for i, (config_a, plugin_a) in enumerate(plugins):
        for config_b, plugin_b in plugins[i + 1 :]:
            shared = sorted(plugin_a.claims & plugin_b.claims & set(EXCLUSIVE_RESOURCES))
            if shared:
                raise IncompatiblePluginsError(
                    f"{type(config_a).__name__} and {type(config_b).__name__} cannot be combined: "
                    f"{EXCLUSIVE_RESOURCES[shared[0]]}"
                )
            reason = pair_conflict(plugin_a, plugin_b)
            if reason:
                raise IncompatiblePluginsError(
                    f"{type(config_a).__name__} and {type(config_b).__name__} cannot be combined: {reason}"
                )
