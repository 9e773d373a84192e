"""``accel.summary``'s return type: a plain dict with a readable ``str``."""

from __future__ import annotations

import json
from typing import Any


class Summary(dict):
    """A JSON-compatible dict: ``target``, ``attached``, ``plugins``, ``denoisers``, ``last_call``.

    ``denoisers[name]["plugins"][plugin]`` holds each plugin's statistics of the last generation;
    ``last_call`` holds the step count, the denoiser calls and the NFEs (network evaluations, one
    per sample and CFG branch) that really ran.
    """

    def __str__(self) -> str:
        if not self.get("attached"):
            return f"accel: nothing attached to {self.get('target')}"
        lines = [f"accel on {self['target']}: {', '.join(self['plugins']) or 'no plugins'}"]
        last = self.get("last_call") or {}
        if last.get("denoiser_calls"):
            lines.append(
                f"  last call: {last.get('steps')} steps, {last.get('samples')} sample(s), "
                f"{last.get('denoiser_calls')} denoiser calls, {last.get('nfe')} NFEs"
            )
        for name, info in self.get("denoisers", {}).items():
            lines.append(f"  {name} ({info['family']})")
            for plugin, stats in info.get("plugins", {}).items():
                lines.append(f"    {plugin}:")
                for key, value in stats.items():
                    lines.append(f"      {key}: {_fmt(value)}")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(self, indent=2, default=str)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)) and len(value) > 12:
        head = ", ".join(_fmt(v) for v in value[:12])
        return f"[{head}, ... ({len(value)} values)]"
    if isinstance(value, dict) and len(value) > 12:
        return f"{{{len(value)} entries}}"
    return str(value)
