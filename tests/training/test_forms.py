"""The run forms are made from the config dataclasses: each config field's type, help text and bounds, and the
config's own check of the whole config, so the page accepts the runs the API and the trainer accept."""

from __future__ import annotations

import pytest
from django import forms

from ml.config import ConfigError, config_fields
from training.forms import DPORunForm, PPORunForm, RewardRunForm, SampleRunForm, SFTRunForm

pytestmark = pytest.mark.django_db

POLICY_FORMS = [SFTRunForm, DPORunForm, PPORunForm, SampleRunForm]
FORM_TYPES = {int: forms.IntegerField, float: forms.FloatField, bool: forms.BooleanField, str: forms.CharField}


def make(form_class, project, data=None):
    if form_class is RewardRunForm:
        return RewardRunForm(data)
    return form_class(data, project=project)


def config_part(form) -> dict:
    specs = config_fields(form.CONFIG_CLASS)
    return {name: field for name, field in form.fields.items() if name in specs}


def refused_by_config(config_class, name, value) -> bool:
    try:
        config_class(**{name: value})
    except ConfigError as error:
        return error.field == name
    return False


@pytest.mark.parametrize("form_class", [RewardRunForm, *POLICY_FORMS])
def test_each_config_field_takes_its_type_help_and_bounds_from_the_dataclass(form_class, project):
    form = make(form_class, project)
    fields = config_part(form)
    assert fields, "a run form shows some of its config"
    for name, field in fields.items():
        spec = config_fields(form.CONFIG_CLASS)[name]
        assert type(field) is FORM_TYPES[spec.type], name
        assert field.help_text == spec.help, name
        if spec.type in (int, float):
            assert (field.min_value, field.max_value) == (spec.bounds.get("min"), spec.bounds.get("max")), name


@pytest.mark.parametrize("form_class", [RewardRunForm, *POLICY_FORMS])
def test_the_form_and_the_config_accept_the_same_values(form_class, project):
    form = make(form_class, project)
    for name, field in config_part(form).items():
        spec = config_fields(form.CONFIG_CLASS)[name]
        if spec.type not in (int, float):
            continue
        step = 1 if spec.type is int else 1e-6
        for bound in spec.bounds.values():
            for value in (bound - step, bound, bound + step):
                value = spec.type(value)
                try:
                    field.clean(str(value))
                except forms.ValidationError:
                    refused_by_form = True
                else:
                    refused_by_form = False
                assert refused_by_form == refused_by_config(form.CONFIG_CLASS, name, value), (name, value)


def test_values_the_old_form_refused_but_the_trainer_takes_are_accepted(project):
    data = {"base_model": "tiny", "max_length": 8, "batch_size": 4096, "learning_rate": 2.0, "epochs": 200,
            "eval_share": 0.6, "imported": ""}  # fmt: skip
    form = RewardRunForm(data)
    assert form.is_valid(), form.errors
    assert form.config() == {**{k: v for k, v in data.items() if k != "imported"}, "use_margin": False}
    assert form.links() == {"imported": "include"}


def test_the_config_s_own_checks_put_their_error_on_the_field(project):
    form = DPORunForm({**DPORunForm.defaults(project), "max_length": 128, "max_prompt_length": 128}, project=project)
    assert not form.is_valid()
    assert form.errors == {"max_prompt_length": ["max_prompt_length must be < max_length (128), got 128"]}
    ppo = PPORunForm({**PPORunForm.defaults(project), "batch_size": 4, "mini_batch_size": 8}, project=project)
    assert not ppo.is_valid() and list(ppo.errors) == ["mini_batch_size"]
    off = {**SampleRunForm.defaults(project), "rank": False, "compare": False, "compare_previous": False}
    sample = SampleRunForm(off, project=project)
    assert not sample.is_valid() and "all three are off" in sample.errors["rank"][0]


def test_an_exclusive_bound_is_explained_on_its_field(project):
    form = SFTRunForm({**SFTRunForm.defaults(project), "learning_rate": 0, "eval_share": 1}, project=project)
    assert not form.is_valid()
    assert form.errors["learning_rate"] == ["Ensure this value is greater than 0.0."]
    assert form.errors["eval_share"] == ["Ensure this value is less than 1.0."]
