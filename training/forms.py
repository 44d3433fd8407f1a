import json

from django import forms
from django.conf import settings

from annotate.models import Project
from ml.config import DPOConfig, PPOConfig, RewardConfig, SampleConfig, SFTConfig
from training import services
from training.models import ModelKind, ModelVersion


class RewardRunForm(forms.Form):
    """The reward-model run's config as an admin adjusts it; the trainer's config class checks it again."""

    base_model = forms.CharField(
        max_length=500,
        help_text="embedded:all-MiniLM-L6-v2 (shipped, offline), or any Hugging Face sequence-classification "
        "model name or local path.",
    )
    max_length = forms.IntegerField(min_value=16, max_value=8192, help_text="Tokens of prompt + reply.")
    batch_size = forms.IntegerField(min_value=1, max_value=1024, help_text="Pairs per step.")
    learning_rate = forms.FloatField(min_value=1e-8, max_value=1.0)
    epochs = forms.IntegerField(min_value=1, max_value=100)
    eval_share = forms.FloatField(
        min_value=0.0, max_value=0.5, label="Held-out share", help_text="Of prompts, kept out of training."
    )
    use_margin = forms.BooleanField(
        required=False, label="Use margins", help_text="A stronger A/B preference asks for a larger score gap."
    )
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

    @classmethod
    def defaults(cls) -> dict:
        config = RewardConfig(base_model=settings.REWARDLAB_REWARD_BASE_MODEL)
        return {name: getattr(config, name) for name in cls.base_fields if name != "imported"} | {"imported": "include"}


class PolicyRunForm(forms.Form):
    """What every policy run's form has: where the policy starts, and LoRA. The trainer's config class checks the
    values again (the form only keeps them in sane ranges)."""

    CONFIG_CLASS: type = SFTConfig
    base_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.none(),
        required=False,
        label="Start from policy version",
        help_text="A policy this project trained; empty: the base model below.",
    )
    base_model = forms.CharField(
        max_length=500,
        help_text="embedded:tiny-gpt2 (a small GPT-2 built from the project's own text, offline), or any Hugging Face "
        "causal LM name or local path.",
    )
    lora_r = forms.IntegerField(
        min_value=0,
        max_value=1024,
        label="LoRA rank",
        help_text="0 trains every weight; 8–64 trains LoRA adapters only (large models), merged on save.",
    )

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

    def config(self) -> dict:
        return {k: v for k, v in self.cleaned_data.items() if k not in ("base_version", "reward_version")}

    def links(self) -> dict:
        return {"base_version": self.cleaned_data.get("base_version")}


class SFTRunForm(PolicyRunForm):
    CONFIG_CLASS = SFTConfig
    max_length = forms.IntegerField(min_value=16, max_value=32768, help_text="Tokens of conversation + reply.")
    batch_size = forms.IntegerField(min_value=1, max_value=1024, help_text="Demonstrations per step.")
    learning_rate = forms.FloatField(min_value=1e-8, max_value=1.0)
    epochs = forms.IntegerField(min_value=1, max_value=100)
    eval_share = forms.FloatField(
        min_value=0.0, max_value=0.5, label="Held-out share", help_text="Of conversations, kept out of training."
    )


class DPORunForm(PolicyRunForm):
    CONFIG_CLASS = DPOConfig
    beta = forms.FloatField(
        min_value=1e-4, max_value=10.0, label="β", help_text="Strength of the pull toward the reference policy."
    )
    max_length = forms.IntegerField(min_value=16, max_value=32768, help_text="Tokens of conversation + reply.")
    max_prompt_length = forms.IntegerField(min_value=8, max_value=32768, help_text="Tokens kept of the conversation.")
    batch_size = forms.IntegerField(min_value=1, max_value=1024, help_text="Pairs per step.")
    learning_rate = forms.FloatField(min_value=1e-8, max_value=1.0)
    epochs = forms.IntegerField(min_value=1, max_value=100)
    eval_share = forms.FloatField(
        min_value=0.0, max_value=0.5, label="Held-out share", help_text="Of conversations, kept out of training."
    )


class PPORunForm(PolicyRunForm):
    CONFIG_CLASS = PPOConfig
    reward_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.none(),
        required=False,
        label="Reward model",
        help_text="Empty: the one serving now.",
    )
    steps = forms.IntegerField(min_value=1, max_value=100_000, help_text="Each samples one batch of replies.")
    batch_size = forms.IntegerField(min_value=1, max_value=4096, help_text="Prompts (replies) per step.")
    mini_batch_size = forms.IntegerField(min_value=1, max_value=4096, help_text="Replies per gradient step.")
    ppo_epochs = forms.IntegerField(min_value=1, max_value=64, label="PPO epochs", help_text="Passes over each batch.")
    learning_rate = forms.FloatField(min_value=1e-9, max_value=1.0)
    max_new_tokens = forms.IntegerField(min_value=1, max_value=8192, help_text="Longest reply sampled.")
    temperature = forms.FloatField(min_value=0.01, max_value=5.0)
    init_kl_coef = forms.FloatField(
        min_value=0.0, max_value=10.0, label="KL coefficient β", help_text="Per-token penalty on log π/π_SFT."
    )
    target_kl = forms.FloatField(
        min_value=0.0, max_value=1000.0, label="Target KL", help_text="Nats per reply β adapts toward; 0 keeps β fixed."
    )
    cliprange = forms.FloatField(min_value=0.01, max_value=1.0, label="Clip range ε")
    vf_coef = forms.FloatField(min_value=0.0, max_value=10.0, label="Value loss weight")

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
    prompts = forms.IntegerField(min_value=1, max_value=100_000, help_text="At most this many prompts, neediest first.")
    replies_per_prompt = forms.IntegerField(min_value=1, max_value=32, label="Replies per prompt (K)")
    max_new_tokens = forms.IntegerField(min_value=1, max_value=8192, help_text="Longest reply sampled.")
    temperature = forms.FloatField(min_value=0.01, max_value=5.0)
    top_p = forms.FloatField(min_value=0.01, max_value=1.0, label="Top-p")
    rank = forms.BooleanField(required=False, label="Ranking tasks", help_text="The K replies, ranked best to worst.")
    compare = forms.BooleanField(required=False, label="A/B tasks", help_text="The K replies in disjoint pairs.")
    compare_previous = forms.BooleanField(
        required=False, label="Head-to-head", help_text="One reply of the earlier policy against one of this one."
    )

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

    def config(self) -> dict:
        return {k: v for k, v in self.cleaned_data.items() if k not in ("base_version", "opponent_version")}

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
