from django import forms
from django.conf import settings

from rewardlab.training.config import RewardConfig


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
