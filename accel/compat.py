"""Which plugins compose and which cannot, with the reason.

Each plugin declares the resources it takes over on a denoiser (``Plugin.claims``). Two plugins
claiming the same exclusive resource cannot be attached together; a few pairs that touch different
resources still conflict and are listed in :data:`PAIR_CONFLICTS`.

Resources:
    ``block_outputs``: replaces the outputs of blocks or block components with cached values.
    ``attention_processor``: installs its own attention processors.
    ``cfg_batch``: decides which CFG branches the denoiser evaluates.
    ``token_set``: changes which tokens the transformer processes.
    ``ffn_structure``: rewrites feed-forward layers.
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
}

#: Plugin-name pairs that conflict although they claim different resources.
PAIR_CONFLICTS: dict[frozenset[str], str] = {
    frozenset({"block_cache", "ras"}): (
        "BlockCache reuses block outputs computed over the full token sequence, while RAS recomputes a "
        "different subset of tokens at every step, so the cached outputs never match the live token set"
    ),
}


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
            reason = PAIR_CONFLICTS.get(frozenset({plugin_a.name, plugin_b.name}))
            if reason:
                raise IncompatiblePluginsError(
                    f"{type(config_a).__name__} and {type(config_b).__name__} cannot be combined: {reason}"
                )
