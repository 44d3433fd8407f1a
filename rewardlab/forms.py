from django import forms
from django.conf import settings

from rewardlab import services
from rewardlab.models import ModelKind, ModelVersion
from rewardlab.training.config import DPOConfig, PPOConfig, RewardConfig, SFTConfig


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

    @classmethod
    def defaults(cls) -> dict:
        config = RewardConfig(base_model=settings.REWARDLAB_REWARD_BASE_MODEL)
        return {name: getattr(config, name) for name in cls.base_fields}


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
