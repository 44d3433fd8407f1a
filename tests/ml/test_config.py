"""The config dataclasses: every field has its help text, and the bounds in its metadata are the ones enforced."""

from __future__ import annotations

import dataclasses

import pytest

from ml.config import BOUNDS, ConfigError, DPOConfig, PPOConfig, RewardConfig, SampleConfig, SFTConfig, config_fields

CONFIGS = [RewardConfig, SFTConfig, DPOConfig, PPOConfig, SampleConfig]


@pytest.mark.parametrize("config_class", CONFIGS)
def test_every_field_has_help_and_only_known_metadata(config_class):
    for f in dataclasses.fields(config_class):
        assert isinstance(f.metadata.get("help"), str) and f.metadata["help"].strip(), f.name
        assert set(f.metadata) <= {"help", *BOUNDS}, f.name
    specs = config_fields(config_class)
    assert list(specs) == [f.name for f in dataclasses.fields(config_class)]
    assert {spec.type for spec in specs.values()} <= {int, float, bool, str}
    for spec in specs.values():
        if spec.type in (int, float):  # every number has a lower bound
            assert {"min", "gt"} & set(spec.bounds), spec.name
        else:
            assert not spec.bounds, spec.name


def _probes(spec):
    """(value, whether the field's own check accepts it) at and just beyond each bound."""
    step = 1 if spec.type is int else 1e-6
    probes = []
    for key, bound in spec.bounds.items():
        inside = {"min": bound, "max": bound, "gt": bound + step, "lt": bound - step}[key]
        outside = {"min": bound - step, "max": bound + step, "gt": bound, "lt": bound}[key]
        probes += [(spec.type(inside), True), (spec.type(outside), False)]
    return probes


def _refused_field(config_class, name, value) -> str | None:
    try:
        config_class(**{name: value})
    except ConfigError as error:
        return error.field
    return None


@pytest.mark.parametrize("config_class", CONFIGS)
def test_the_bounds_in_the_metadata_are_the_ones_the_config_enforces(config_class):
    for spec in config_fields(config_class).values():
        for value, accepted in _probes(spec):
            refused = _refused_field(config_class, spec.name, value)
            # A value can still be refused for another field's sake (max_prompt_length < max_length, say).
            assert (refused != spec.name) == accepted, (spec.name, value, refused)


def test_each_error_names_its_field():
    cases = [
        (RewardConfig, {"base_model": " "}, "base_model"),
        (RewardConfig, {"device": "toaster"}, "device"),
        (SFTConfig, {"lora_target_modules": 3}, "lora_target_modules"),
        (DPOConfig, {"max_length": 64, "max_prompt_length": 64}, "max_prompt_length"),
        (PPOConfig, {"batch_size": 2}, "mini_batch_size"),
        (PPOConfig, {"gamma": 1.5}, "gamma"),
        (SampleConfig, {"rank": False, "compare": False, "compare_previous": False}, "rank"),
        (SampleConfig, {"use_margin": True}, ""),  # unknown: no one field is at fault
    ]
    for config_class, data, field in cases:
        with pytest.raises(ConfigError) as error:
            config_class.from_dict(data)
        assert error.value.field == field, (config_class.__name__, data, str(error.value))
