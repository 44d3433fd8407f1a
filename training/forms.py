import json

from django import forms
from django.conf import settings
from django.core import validators

from annotate.models import Project
from ml.config import DPOConfig, PPOConfig, RewardConfig, SampleConfig, SFTConfig, config_fields
from training import services
from training.models import ModelKind, ModelVersion


class GreaterThanValidator(validators.BaseValidator):
    message = "Ensure this value is greater than %(limit_value)s."
    code = "greater_than"

    def compare(self, a, b) -> bool:
        return a <= b


class LessThanValidator(validators.BaseValidator):
    message = "Ensure this value is less than %(limit_value)s."
    code = "less_than"

    def compare(self, a, b) -> bool:
        return a >= b


def config_field(config_class: type, name: str, **options) -> forms.Field:
    """The form field for field `name` of a config dataclass: its type, help text and bounds (``min``/``max``
    inclusive, ``gt``/``lt`` exclusive) come from the dataclass field (`ml.config.config_fields`); `options` (a
    label, say) go to the form field as well."""
    spec = config_fields(config_class)[name]
    options = {"help_text": spec.help, **options}
    if spec.type is bool:
        return forms.BooleanField(required=False, **options)
    if spec.type is str:
        return forms.CharField(**options)
    bounds = spec.bounds
    limits = [GreaterThanValidator(bounds["gt"])] if "gt" in bounds else []
    limits += [LessThanValidator(bounds["lt"])] if "lt" in bounds else []
    field_class = forms.IntegerField if spec.type is int else forms.FloatField
    return field_class(min_value=bounds.get("min"), max_value=bounds.get("max"), validators=limits, **options)


class RunForm(forms.Form):
    """A run's form: fields of the kind's config dataclass (`config_field`) and the inputs it takes besides
    (`links`). Once every field is valid, the config class checks the whole config as the trainer will (fields
    that depend on each other included), so the page accepts the runs the API and the trainer accept."""

    CONFIG_CLASS: type

    def config(self) -> dict:
        """The config fields of the cleaned data: what `services.run_start` takes as `config`."""
        names = config_fields(self.CONFIG_CLASS)
        return {name: value for name, value in self.cleaned_data.items() if name in names}

    def links(self) -> dict:
        """The run's inputs besides its config: `services.run_start`'s other keyword arguments."""
        return {}

    def clean(self) -> dict:
        cleaned = super().clean()
        if not self.errors:
            try:
                self.CONFIG_CLASS.from_dict(self.config())
            except ValueError as error:
                field = getattr(error, "field", "")
                self.add_error(field if field in self.fields else None, str(error))
        return cleaned


class RewardRunForm(RunForm):
    """The reward-model run's config as an admin adjusts it, and which judgements it trains on."""

    CONFIG_CLASS = RewardConfig
    base_model = config_field(RewardConfig, "base_model", max_length=500)  # a model version's base_model column
    max_length = config_field(RewardConfig, "max_length")
    batch_size = config_field(RewardConfig, "batch_size")
    learning_rate = config_field(RewardConfig, "learning_rate")
    epochs = config_field(RewardConfig, "epochs")
    eval_share = config_field(RewardConfig, "eval_share", label="Held-out share")
    use_margin = config_field(RewardConfig, "use_margin", label="Use margins")
    imported = forms.ChoiceField(
        choices=[
            ("include", "Included, beside the labelers' judgements"),
            ("exclude", "Left out: the labelers' judgements only"),
            ("only", "Only them: a first reward model from imported data"),
        ],
        initial="include",
        required=False,
        label="Judgements imported with datasets",
    )

    def clean_imported(self) -> str:
        return self.cleaned_data["imported"] or "include"

    def links(self) -> dict:
        return {"imported": self.cleaned_data["imported"]}

    @classmethod
    def defaults(cls) -> dict:
        config = RewardConfig(base_model=settings.REWARDLAB_REWARD_BASE_MODEL)
        return {name: getattr(config, name) for name in cls.base_fields if name != "imported"} | {"imported": "include"}


class PolicyRunForm(RunForm):
    """What every policy run's form has: where the policy starts, and LoRA."""

    CONFIG_CLASS: type = SFTConfig
    base_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.none(),
        required=False,
        label="Start from policy version",
        help_text="A policy this project trained; empty: the base model below.",
    )
    base_model = config_field(SFTConfig, "base_model", max_length=500)
    lora_r = config_field(SFTConfig, "lora_r", label="LoRA rank")

    def __init__(self, *args, project, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.project = project
        self.fields["base_version"].queryset = ModelVersion.objects.filter(
            project=project, kind=ModelKind.POLICY
        ).order_by("-version")

    @classmethod
    def defaults(cls, project) -> dict:
        config = cls.CONFIG_CLASS(base_model=settings.REWARDLAB_POLICY_BASE_MODEL)
        initial = {name: getattr(config, name) for name in cls.base_fields if hasattr(config, name)}
        if cls.CONFIG_CLASS is not SFTConfig:
            initial["base_version"] = services.newest_sft_policy(project)
        return initial

    def links(self) -> dict:
        return {"base_version": self.cleaned_data.get("base_version")}


class SFTRunForm(PolicyRunForm):
    CONFIG_CLASS = SFTConfig
    max_length = config_field(SFTConfig, "max_length")
    batch_size = config_field(SFTConfig, "batch_size")
    learning_rate = config_field(SFTConfig, "learning_rate")
    epochs = config_field(SFTConfig, "epochs")
    eval_share = config_field(SFTConfig, "eval_share", label="Held-out share")


class DPORunForm(PolicyRunForm):
    CONFIG_CLASS = DPOConfig
    beta = config_field(DPOConfig, "beta", label="β")
    max_length = config_field(DPOConfig, "max_length")
    max_prompt_length = config_field(DPOConfig, "max_prompt_length")
    batch_size = config_field(DPOConfig, "batch_size")
    learning_rate = config_field(DPOConfig, "learning_rate")
    epochs = config_field(DPOConfig, "epochs")
    eval_share = config_field(DPOConfig, "eval_share", label="Held-out share")


class PPORunForm(PolicyRunForm):
    CONFIG_CLASS = PPOConfig
    reward_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.none(),
        required=False,
        label="Reward model",
        help_text="Empty: the one serving now.",
    )
    steps = config_field(PPOConfig, "steps")
    batch_size = config_field(PPOConfig, "batch_size")
    mini_batch_size = config_field(PPOConfig, "mini_batch_size")
    ppo_epochs = config_field(PPOConfig, "ppo_epochs", label="PPO epochs")
    learning_rate = config_field(PPOConfig, "learning_rate")
    max_new_tokens = config_field(PPOConfig, "max_new_tokens")
    temperature = config_field(PPOConfig, "temperature")
    init_kl_coef = config_field(PPOConfig, "init_kl_coef", label="KL coefficient β")
    target_kl = config_field(PPOConfig, "target_kl", label="Target KL")
    cliprange = config_field(PPOConfig, "cliprange", label="Clip range ε")
    vf_coef = config_field(PPOConfig, "vf_coef", label="Value loss weight")

    def __init__(self, *args, project, **kwargs) -> None:
        super().__init__(*args, project=project, **kwargs)
        self.fields["reward_version"].queryset = ModelVersion.objects.filter(
            project=project, kind=ModelKind.REWARD
        ).order_by("-version")

    def links(self) -> dict:
        return {**super().links(), "reward_version": self.cleaned_data.get("reward_version")}


class SampleRunForm(PolicyRunForm):
    """A sampling run: which policy writes, how many replies, how they are drawn, and which tasks they make."""

    CONFIG_CLASS = SampleConfig
    opponent_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.none(),
        required=False,
        label="Head-to-head against",
        help_text="Empty: the policy that served before this one.",
    )
    prompts = config_field(SampleConfig, "prompts")
    replies_per_prompt = config_field(SampleConfig, "replies_per_prompt", label="Replies per prompt (K)")
    max_new_tokens = config_field(SampleConfig, "max_new_tokens")
    temperature = config_field(SampleConfig, "temperature")
    top_p = config_field(SampleConfig, "top_p", label="Top-p")
    rank = config_field(SampleConfig, "rank", label="Ranking tasks")
    compare = config_field(SampleConfig, "compare", label="A/B tasks")
    compare_previous = config_field(SampleConfig, "compare_previous", label="Head-to-head")

    def __init__(self, *args, project, **kwargs) -> None:
        super().__init__(*args, project=project, **kwargs)
        self.fields["base_version"].label = "Sample from policy version"
        self.fields["base_version"].help_text = "Empty: the serving policy."
        self.fields["opponent_version"].queryset = self.fields["base_version"].queryset
        del self.fields["base_model"], self.fields["lora_r"]

    @classmethod
    def defaults(cls, project) -> dict:
        config = SampleConfig()
        initial = {name: getattr(config, name) for name in cls.base_fields if hasattr(config, name)}
        initial["base_version"] = services.serving_policy(project)
        return initial

    def links(self) -> dict:
        return {name: self.cleaned_data.get(name) for name in ("base_version", "opponent_version")}


class RetrainSettingsForm(forms.ModelForm):
    """The project's retraining cycle and active selection, as an admin sets them. Each run config is checked by
    its trainer's config class, and an error names the run kind and the field."""

    retrain_run_configs = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false", "class": "mono"}),
        label="Run configs (JSON)",
        help_text='By run kind, e.g. {"ppo": {"steps": 200}, "sample": {"replies_per_prompt": 4}}. Left out: defaults.',
    )

    class Meta:
        model = Project
        fields = [
            "retrain_enabled",
            "retrain_min_comparisons",
            "retrain_min_demonstrations",
            "retrain_policy_method",
            "retrain_min_reward_accuracy",
            "retrain_max_kl",
            "active_selection",
            "retrain_run_configs",
        ]
        labels = {
            "retrain_enabled": "Retrain on a schedule",
            "retrain_min_comparisons": "New preference judgements for a reward model",
            "retrain_min_demonstrations": "New demonstrations for SFT",
            "retrain_policy_method": "Policy method after a new reward model",
            "retrain_min_reward_accuracy": "Least held-out accuracy to serve a reward model",
            "retrain_max_kl": "Most KL (nats) to serve a PPO policy",
            "active_selection": "Active selection",
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial["retrain_run_configs"] = json.dumps(self.instance.retrain_run_configs or {}, indent=1)

    def clean_retrain_run_configs(self) -> dict:
        text = self.cleaned_data["retrain_run_configs"].strip() or "{}"
        try:
            configs = json.loads(text)
        except json.JSONDecodeError as error:
            where = f"line {error.lineno}, column {error.colno}"
            raise forms.ValidationError(f"Not JSON: {error.msg} at {where}.") from None
        if not isinstance(configs, dict):
            raise forms.ValidationError("An object by run kind: reward, sft, ppo, dpo, sample.")
        for kind, config in configs.items():
            if kind not in services.CONFIGS:
                raise forms.ValidationError(f"{kind!r} is not a run kind (reward, sft, ppo, dpo, sample).")
            if not isinstance(config, dict):
                raise forms.ValidationError(f"{kind}: the config is an object of fields.")
            try:
                services.config_clean(kind, config)
            except services.RunError as error:
                raise forms.ValidationError(f"{kind}: {error.message}") from None
        return configs
