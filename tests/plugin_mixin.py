"""``PluginTesterMixin``: the contract every accel plugin's tests check (in the spirit of diffusers'
``CacheTesterMixin``).

A plugin's test class subclasses the mixin and says how to build a tiny target and which configs to
use; the mixin brings the tests:

- ``test_config_roundtrip``: the active config is a registered ``config_cls``, survives
  ``to_dict`` -> JSON -> ``from_dict``, and ``str(config)`` starts with its ``short_prefix``;
- ``test_apply_remove_is_exact``: output before ``apply`` == output after ``remove``, bit for bit;
  no accel hook, instance override, swapped processor, replaced submodule, torch hook or changed
  weight is left; a second apply gives the first apply's output again;
- ``test_plugin_is_active``: the active config changes the output (``changes_output``) and
  :meth:`check_active` sees the skipped work in the plugin's statistics;
- ``test_identity_config_is_bit_identical``: the config that must do nothing
  (:meth:`identity_config`) gives the stock output bit for bit, with ``identity_stats`` in the
  summary. A plugin without such a config sets ``test_identity_config_is_bit_identical = None``;
- ``test_same_seed_same_output``: with the plugin attached, seed 0, seed 1, seed 0 again: the two
  seed-0 outputs and their statistics are identical (per-generation state resets);
- ``test_bad_config_is_rejected``: one test per entry of ``bad_configs``: the field change raises
  ``accel.ConfigError`` containing the expected text, at construction or (entries made with
  :func:`at_apply`) at ``accel.apply``, which then leaves the target untouched;
- ``test_unsupported_family_is_refused``: ``accel.apply`` on a denoiser of ``unsupported_family``
  raises ``accel.UnsupportedModelError`` naming the config and the family, and attaches nothing;
- ``test_summary_reports_plugin``: ``accel.summary`` passes plain ``json.dumps``, lists the config, has the
  plugin's entry under every denoiser with every key of ``summary_keys``, counts the steps run,
  and says ``attached: False`` after ``remove``.

What a subclass fills in::

    class TestDeepCachePlugin(PluginTesterMixin):
        config_cls = accel.DeepCacheConfig
        plugin_name = "deep_cache"                 # its key in summary["denoisers"][...]["plugins"]
        summary_keys = ("schedule", "skipped_layer_calls", ...)
        unsupported_family = "pixart"
        bad_configs = [({"interval": 0}, "interval must be an integer in [1, 1000]"),
                       at_apply({"branch": 7}, "branch must be in [0, 4] for this U-Net")]
        identity_stats = {"skipped_layer_calls": 0}

        def make_target(self):  return Target.pipeline("unet", steps=4)
        def config(self):       return accel.DeepCacheConfig(interval=2)
        def identity_config(self):  return accel.DeepCacheConfig(interval=1)
        def check_active(self, stats, summary):  assert stats["skipped_layer_calls"] > 0

Bad-config kwargs are applied to :meth:`config` with ``dataclasses.replace``; a value that is a
callable is called with the test instance first (for paths under ``self.tmp_path``). Entries made
with :func:`known_bug` are strict xfails: they document a plugin defect and fail once it is fixed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn as nn

import accel
from accel.pipelines.testing import tiny_denoiser, tiny_pipeline
from accel.plugin import plugin_for


# ------------------------------------------------------------------------------------------ targets
@dataclasses.dataclass
class Target:
    """What ``accel.apply`` receives (``obj``) and how to run it: ``run(seed)`` -> output tensor."""

    obj: Any
    run: Callable[[int], torch.Tensor]
    steps: int | None = None  # denoising steps per run; None for a model that is not a diffusion pipeline

    @classmethod
    def pipeline(cls, family: str, steps: int = 4, **overrides: Any) -> Target:
        """A tiny stock pipeline of ``family`` run for ``steps`` steps (``overrides``: call kwargs)."""
        tiny = tiny_pipeline(family)

        def run(seed: int) -> torch.Tensor:
            with torch.no_grad():
                return tiny(**tiny.inputs(seed=seed, steps=steps, **overrides))

        return cls(tiny.pipe, run, steps)

    @classmethod
    def model(cls, model: nn.Module, make_input: Callable[[torch.Generator], Any]) -> Target:
        """A bare model called on ``make_input(generator)``."""

        def run(seed: int) -> torch.Tensor:
            with torch.no_grad():
                return model(make_input(torch.Generator().manual_seed(seed)))

        return cls(model, run)


def _roots(obj: Any) -> list[tuple[str, nn.Module]]:
    if isinstance(obj, nn.Module):
        return [("model", obj)]
    return [(name, m) for name, m in obj.components.items() if isinstance(m, nn.Module)]


def fingerprint(obj: Any) -> dict[str, Any]:
    """Everything accel could leave behind on a pipeline or model, to compare before/after ``remove``."""
    modules, tensors = {}, {}
    for root_name, root in _roots(obj):
        for name, sub in root.named_modules():
            registry = getattr(sub, "_diffusers_hook", None)
            processor = sub.__dict__.get("processor")
            modules[f"{root_name}:{name}"] = dict(
                module=(type(sub).__name__, id(sub)),
                training=sub.training,
                hook_registry=None if registry is None else tuple(registry.hooks),
                instance_forward="forward" in sub.__dict__,
                processor=None if processor is None else (type(processor).__name__, id(processor)),
                torch_hooks=(len(sub._forward_hooks), len(sub._forward_pre_hooks)),
                attributes=tuple(sorted(k for k in sub.__dict__ if not k.startswith("_"))),
            )
        for key, value in root.state_dict(keep_vars=True).items():
            tensors[f"{root_name}:{key}"] = (id(value), value.detach().clone())
    overrides = {}
    if not isinstance(obj, nn.Module):
        for owner_name, owner in (("pipeline", obj), ("scheduler", getattr(obj, "scheduler", None))):
            if owner is not None:
                overrides[owner_name] = sorted(
                    (k, id(v)) for k, v in vars(owner).items() if callable(v) and not isinstance(v, (nn.Module, type))
                )
    return dict(modules=modules, tensors=tensors, overrides=overrides)


def accel_hooks(obj: Any) -> list[str]:
    """``root:module/hook`` for every accel hook registered anywhere on ``obj``."""
    found = []
    for root_name, root in _roots(obj):
        for name, sub in root.named_modules():
            registry = getattr(sub, "_diffusers_hook", None)
            found += [f"{root_name}:{name}/{h}" for h in (registry.hooks if registry else ()) if h.startswith("accel")]
    return found


def assert_restored(before: dict[str, Any], after: dict[str, Any]) -> None:
    """``after`` (a fingerprint) equals ``before``; the message names what differs."""
    assert after["overrides"] == before["overrides"], "instance-level method overrides left on the pipeline/scheduler"
    assert after["modules"].keys() == before["modules"].keys(), (
        f"module tree changed: added {sorted(after['modules'].keys() - before['modules'].keys())[:5]}, "
        f"removed {sorted(before['modules'].keys() - after['modules'].keys())[:5]}"
    )
    changed = [k for k in before["modules"] if before["modules"][k] != after["modules"][k]]
    if changed:
        first = changed[0]
        pytest.fail(f"modules not restored, e.g. {first}: {before['modules'][first]} -> {after['modules'][first]}")
    assert after["tensors"].keys() == before["tensors"].keys(), "state_dict keys changed"
    moved = [
        k
        for k, (i, v) in before["tensors"].items()
        if after["tensors"][k][0] != i or not torch.equal(after["tensors"][k][1], v)
    ]
    assert not moved, f"parameters/buffers replaced or changed: {moved[:5]}"


# ------------------------------------------------------------------------------------------ bad configs
def at_apply(kwargs: dict[str, Any], expected: str, error: type[Exception] = accel.ConfigError) -> Any:
    """A bad-config entry that is a valid dataclass but must be refused by ``accel.apply`` on the target."""
    return pytest.param(kwargs, expected, True, error, id="apply-" + _kwargs_id(kwargs))


def known_bug(
    kwargs: dict[str, Any],
    expected: str,
    reason: str,
    raises: type[BaseException] | None = None,
    apply: bool = False,
    error: type[Exception] = accel.ConfigError,
) -> Any:
    """A bad-config entry the plugin gets wrong today: a strict xfail, for the exception ``raises`` if given
    (None: the config is accepted). It turns into a failure once the plugin is fixed: then drop the mark."""
    return pytest.param(
        kwargs,
        expected,
        apply,
        error,
        id=("apply-" if apply else "") + _kwargs_id(kwargs),
        marks=pytest.mark.xfail(strict=True, reason=reason, raises=raises or pytest.fail.Exception),
    )


def _kwargs_id(kwargs: dict[str, Any]) -> str:
    return "-".join(f"{k}={v.__name__ if callable(v) else repr(v)}" for k, v in kwargs.items())


# ------------------------------------------------------------------------------------------ the mixin
class PluginTesterMixin:
    """The plugin contract; see the module docstring for what a subclass fills in."""

    #: the config dataclass of the plugin under test
    config_cls: type[accel.PluginConfig]
    #: the plugin's key in ``summary["denoisers"][name]["plugins"]``
    plugin_name: str
    #: statistics the summary must report for the plugin
    summary_keys: tuple[str, ...] = ()
    #: ``(kwargs, expected_text)`` (refused at construction), ``at_apply(...)`` or ``known_bug(...)`` entries
    bad_configs: list[Any] = []
    #: a family (``accel.pipelines.testing.FAMILIES``) the plugin does not support
    unsupported_family: str
    #: statistics the identity config must report (e.g. nothing skipped)
    identity_stats: dict[str, Any] = {}
    #: whether the active config must change the output (all plugins here: True)
    changes_output: bool = True

    # -- what a subclass provides -------------------------------------------------------------
    def make_target(self) -> Target:
        raise NotImplementedError

    def config(self) -> accel.PluginConfig:
        """A config whose effect is visible on the tiny target (output and statistics)."""
        raise NotImplementedError

    def identity_config(self) -> accel.PluginConfig:
        """A config that must leave the output bit-identical (e.g. DeepCache interval=1)."""
        raise NotImplementedError

    def check_active(self, stats: dict[str, Any], summary: dict[str, Any]) -> None:
        """Assert that ``stats`` (the plugin's entry) / ``summary`` show the work the plugin skipped."""
        raise NotImplementedError

    def apply(self, obj: Any, *configs: accel.PluginConfig) -> accel.AccelHandle:
        """``accel.apply``; override to expect a documented warning."""
        return accel.apply(obj, *configs)

    # -- helpers -----------------------------------------------------------------------------
    @pytest.fixture(autouse=True)
    def _plugin_tmp_path(self, tmp_path):
        self.tmp_path = tmp_path

    def pytest_generate_tests(self, metafunc):
        if "bad_kwargs" in metafunc.fixturenames:
            entries = [
                e
                if isinstance(e, type(pytest.param(None)))
                else pytest.param(e[0], e[1], False, accel.ConfigError, id=_kwargs_id(e[0]))
                for e in self.bad_configs
            ]
            metafunc.parametrize("bad_kwargs,expected,apply_time,error", entries)

    def config_with(self, **changes: Any) -> accel.PluginConfig:
        changes = {k: v(self) if callable(v) else v for k, v in changes.items()}
        return dataclasses.replace(self.config(), **changes)

    def plugin_stats(self, obj: Any) -> dict[str, Any]:
        """The plugin's statistics (first denoiser), after checking every denoiser has an entry."""
        denoisers = accel.summary(obj)["denoisers"]
        assert denoisers, "accel.summary lists no denoiser"
        for name, info in denoisers.items():
            assert self.plugin_name in info["plugins"], f"{name}: no {self.plugin_name!r} in {list(info['plugins'])}"
        return next(iter(denoisers.values()))["plugins"][self.plugin_name]

    # -- the contract --------------------------------------------------------------------------
    def test_config_roundtrip(self):
        config = self.config()
        assert type(config) is self.config_cls
        assert plugin_for(config).name == self.plugin_name
        assert self.config_cls.from_dict(json.loads(json.dumps(config.to_dict()))) == config
        assert str(config).startswith(self.config_cls.short_prefix)

    def test_apply_remove_is_exact(self):
        target = self.make_target()
        baseline = target.run(0)
        before = fingerprint(target.obj)
        self.apply(target.obj, self.config())
        first = target.run(0)
        assert accel.remove(target.obj) is True
        assert accel.get_handle(target.obj) is None
        assert accel_hooks(target.obj) == [], "accel hooks left after remove"
        assert_restored(before, fingerprint(target.obj))
        assert torch.equal(target.run(0), baseline), "remove() must restore the stock output bit for bit"
        assert accel.remove(target.obj) is False
        self.apply(target.obj, self.config())  # a second apply after remove: as good as the first
        assert torch.equal(target.run(0), first)
        accel.remove(target.obj)
        assert torch.equal(target.run(0), baseline)

    def test_plugin_is_active(self):
        target = self.make_target()
        baseline = target.run(0)
        self.apply(target.obj, self.config())
        out = target.run(0)
        stats, summary = self.plugin_stats(target.obj), accel.summary(target.obj)
        accel.remove(target.obj)
        assert out.shape == baseline.shape and torch.isfinite(out).all()
        if self.changes_output:
            assert not torch.equal(out, baseline), f"{self.config()} did not change the output"
        self.check_active(stats, summary)

    def test_identity_config_is_bit_identical(self):
        target = self.make_target()
        baseline = target.run(0)
        self.apply(target.obj, self.identity_config())
        out = target.run(0)
        stats = self.plugin_stats(target.obj)
        accel.remove(target.obj)
        assert torch.equal(out, baseline), f"{self.identity_config()} must not change the output"
        assert {k: stats[k] for k in self.identity_stats} == self.identity_stats

    def test_same_seed_same_output(self):
        target = self.make_target()
        self.apply(target.obj, self.config())
        first = target.run(0)
        first_stats = json.loads(json.dumps(self.plugin_stats(target.obj)))
        other = target.run(1)
        again = target.run(0)
        again_stats = json.loads(json.dumps(self.plugin_stats(target.obj)))
        accel.remove(target.obj)
        assert not torch.equal(first, other), "seeds 0 and 1 gave the same output: the check below would be empty"
        assert torch.equal(first, again), "same seed, different output: per-generation state was not reset"
        assert again_stats == first_stats, "same seed, different statistics: they were not reset between generations"

    def test_bad_config_is_rejected(self, bad_kwargs, expected, apply_time, error):
        if not apply_time:
            with pytest.raises(error) as err:
                self.config_with(**bad_kwargs)
        else:
            config = self.config_with(**bad_kwargs)  # a valid dataclass ...
            target = self.make_target()
            before = fingerprint(target.obj)
            with pytest.raises(error) as err:  # ... refused for this target, with nothing left attached
                self.apply(target.obj, config)
            assert accel.get_handle(target.obj) is None
            assert_restored(before, fingerprint(target.obj))
        assert expected in str(err.value), f"message {str(err.value)!r} lacks {expected!r}"

    def test_unsupported_family_is_refused(self):
        model = tiny_denoiser(self.unsupported_family)
        before = fingerprint(model)
        with pytest.raises(accel.UnsupportedModelError) as err:
            accel.apply(model, self.config())
        message = str(err.value)
        assert self.config_cls.__name__ in message and f"({self.unsupported_family})" in message, message
        assert accel.get_handle(model) is None
        assert_restored(before, fingerprint(model))

    def test_summary_reports_plugin(self):
        target = self.make_target()
        config = self.config()
        self.apply(target.obj, config)
        target.run(0)
        summary = accel.summary(target.obj)
        stats = self.plugin_stats(target.obj)
        text = str(summary)
        accel.remove(target.obj)
        json.dumps(summary)  # JSON as it is: no tensors or other objects that need default=str
        assert summary["attached"] is True and str(config) in summary["plugins"]
        missing = [k for k in self.summary_keys if k not in stats]
        assert not missing, f"summary lacks {missing}; it has {sorted(stats)}"
        assert self.plugin_name in text
        if target.steps is not None:
            assert summary["last_call"]["steps"] == target.steps and summary["last_call"]["nfe"] > 0
        assert accel.summary(target.obj)["attached"] is False
