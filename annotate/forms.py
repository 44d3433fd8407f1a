from django import forms

from annotate.models import COMPARISON_SCALE, SkipReason


class PromptImportForm(forms.Form):
    file = forms.FileField(
        label="JSONL file",
        help_text="One JSON object per line: prompt + completions, messages + completions, or HH chosen/rejected.",
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if not upload.name.lower().endswith((".jsonl", ".json", ".ndjson", ".txt")):
            raise forms.ValidationError("Expected a .jsonl file.")
        return upload


# --- labeling: forms parse and coerce; the services judge what is acceptable ----------------------------------


class SubmissionForm(forms.Form):
    client_token = forms.CharField(max_length=64, widget=forms.HiddenInput)
    time_spent_ms = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)
    mode = forms.CharField(required=False, widget=forms.HiddenInput)  # the kinds the labeler chose to work on

    # The fields that are the judgement's own (`services.submission_submit`'s `data`).
    judgement_fields: tuple[str, ...] = ()

    def judgement(self) -> dict:
        """The kind's own fields of the valid form, as `services.submission_submit` takes them."""
        return {name: self.cleaned_data[name] for name in self.judgement_fields}


class DemonstrationForm(SubmissionForm):
    text = forms.CharField(strip=False, required=False, widget=forms.Textarea)

    judgement_fields = ("text",)


class ComparisonForm(SubmissionForm):
    choice = forms.TypedChoiceField(choices=[], coerce=int, required=False)
    both_bad = forms.BooleanField(required=False)

    judgement_fields = ("choice", "both_bad")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["choice"].choices = [("", "")] + [(str(value), label) for value, label in COMPARISON_SCALE]

    def clean_choice(self):
        choice = self.cleaned_data["choice"]
        if choice in (None, ""):
            raise forms.ValidationError("Choose a point on the scale (keys 1–8).")
        return choice


class RatingForm(SubmissionForm):
    score = forms.TypedChoiceField(choices=[(str(i), str(i)) for i in range(1, 8)], coerce=int, required=False)
    flags = forms.MultipleChoiceField(required=False, choices=[])
    comment = forms.CharField(required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 2}))

    judgement_fields = ("score", "flags", "comment")

    def __init__(self, *args, project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["flags"].choices = [(f["key"], f["label"]) for f in project.flags]

    def clean_score(self):
        score = self.cleaned_data["score"]
        if score in (None, ""):
            raise forms.ValidationError("Give a score from 1 to 7 (keys 1–7).")
        return score


class RankingForm(SubmissionForm):
    """One `rank_<message id>` field per candidate (1 = best; equal numbers are ties), which is all a browser
    without JavaScript needs; the drag-and-drop board fills the same fields."""

    none_acceptable = forms.BooleanField(required=False)

    def __init__(self, *args, candidate_ids: list[int], project, **kwargs):
        super().__init__(*args, **kwargs)
        self.candidate_ids = candidate_ids
        places = [("", "—")] + [(str(i), str(i)) for i in range(1, len(candidate_ids) + 1)]
        flag_choices = [(f["key"], f["label"]) for f in project.flags]
        for message_id in candidate_ids:
            self.fields[f"rank_{message_id}"] = forms.TypedChoiceField(
                choices=places, coerce=int, required=False, empty_value=None
            )
            self.fields[f"flags_{message_id}"] = forms.MultipleChoiceField(choices=flag_choices, required=False)

    def tiers(self) -> list[list[int]]:
        """Candidates grouped by the place given to them, best first; unplaced candidates are left out (the
        service then says how many are missing)."""
        by_place: dict[int, list[int]] = {}
        for message_id in self.candidate_ids:
            place = self.cleaned_data.get(f"rank_{message_id}")
            if place is not None:
                by_place.setdefault(place, []).append(message_id)
        return [by_place[place] for place in sorted(by_place)]

    def candidate_flags(self) -> dict[str, list[str]]:
        return {str(m): self.cleaned_data.get(f"flags_{m}", []) for m in self.candidate_ids}

    def judgement(self) -> dict:
        return {
            "tiers": self.tiers(),
            "none_acceptable": self.cleaned_data["none_acceptable"],
            "candidate_flags": self.candidate_flags(),
        }


class SkipForm(forms.Form):
    reason = forms.ChoiceField(choices=[])
    note = forms.CharField(required=False, max_length=1000)
    mode = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["reason"].choices = [("", "Choose a reason…"), *SkipReason.choices]


class ReportForm(forms.Form):
    reason = forms.CharField(required=False, max_length=2000)


class DeactivateLabelerForm(forms.Form):
    requeue = forms.BooleanField(
        required=False,
        initial=True,
        label="Send their judgements in this project back for re-labeling",
        help_text="They are kept, but no longer count; each task reopens for another labeler.",
    )


class ExportForm(forms.Form):
    """The options of an export, as a researcher picks them on the export page (GET parameters)."""

    dataset = forms.ChoiceField(
        choices=[
            ("preferences", "Preference pairs (reward model, DPO)"),
            ("hh", "HH-style transcripts (chosen / rejected)"),
            ("sft", "Demonstrations for SFT (messages)"),
            ("ratings", "Ratings (score and flags)"),
            ("prompts", "Prompts only (PPO, online methods)"),
            ("trees", "Whole conversation trees"),
        ]
    )
    style = forms.ChoiceField(
        choices=[("standard", "Standard (prompt as text)"), ("conversational", "Conversational (role/content lists)")]
    )
    aggregation = forms.ChoiceField(
        choices=[
            ("raw", "One row per labeler's judgement"),
            ("majority", "Aggregated: majority vote per pair"),
            ("bradley_terry", "Aggregated: Bradley–Terry fit with ties"),
        ],
        label="Rows",
    )
    ties = forms.ChoiceField(choices=[("drop", "Drop ties"), ("label", "Keep ties, labelled tie: true")])
    margin = forms.BooleanField(required=False, initial=True, label="Include margin (comparison strength)")
    format = forms.ChoiceField(choices=[("jsonl", "JSONL"), ("parquet", "Parquet")])
    kinds = forms.MultipleChoiceField(
        choices=[("rank", "Rankings"), ("compare", "A/B comparisons")],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Preference pairs from these judgements (none ticked: both).",
    )
    date_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    labelers = forms.CharField(required=False, help_text="Usernames, comma separated (empty: everyone).")
    model_versions = forms.CharField(required=False, help_text="Model version ids, comma separated.")
    min_agreement = forms.FloatField(
        required=False, min_value=0, max_value=1, help_text="Keep prompts whose votes agree this much (0 to 1)."
    )
    imported = forms.ChoiceField(
        choices=[
            ("include", "With the labelers' judgements"),
            ("exclude", "Left out"),
            ("only", "Only imported judgements"),
        ],
        label="Judgements imported with a dataset",
        required=False,
    )

    def clean_imported(self) -> str:
        return self.cleaned_data["imported"] or "include"

    def clean_labelers(self) -> tuple[int, ...]:
        from django.contrib.auth import get_user_model

        names = [n.strip() for n in self.cleaned_data["labelers"].split(",") if n.strip()]
        found = dict(get_user_model().objects.filter(username__in=names).values_list("username", "id"))
        missing = [n for n in names if n not in found]
        if missing:
            raise forms.ValidationError(f"No user named {missing[0]!r}.")
        return tuple(found[n] for n in names)

    def clean_model_versions(self) -> tuple[int, ...]:
        raw = [v.strip() for v in self.cleaned_data["model_versions"].split(",") if v.strip()]
        if not all(v.isdigit() for v in raw):
            raise forms.ValidationError("Model versions are ids (numbers), comma separated.")
        return tuple(int(v) for v in raw)

    def options(self):
        from annotate.exports import ExportError, ExportOptions

        data = dict(self.cleaned_data)
        data["kinds"] = tuple(data["kinds"])
        try:
            return ExportOptions(**data)
        except ExportError as error:
            self.add_error(error.field if error.field in self.fields else None, error.message)
            return None


# --- live chat ----------------------------------------------------------------------------------------------


class ChatStartForm(forms.Form):
    goal = forms.CharField(
        label="What do you want help with?",
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "For example: plan a week of vegetarian dinners."}),
    )
    text = forms.CharField(label="Your first message", widget=forms.Textarea(attrs={"rows": 3}))


class ChatSendForm(forms.Form):
    text = forms.CharField(strip=False, required=False, widget=forms.Textarea(attrs={"rows": 2}))


class ChatVoteForm(ComparisonForm):
    """The turn's A/B choice on the 8-point scale, and the chosen reply as the labeler may have rewritten it."""

    both_bad = None
    edited_text = forms.CharField(strip=False, required=False, widget=forms.Textarea)


class ChatEndForm(forms.Form):
    rating = forms.TypedChoiceField(choices=[(str(i), str(i)) for i in range(1, 8)], coerce=int, required=False)
    comment = forms.CharField(required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 2}))

    def clean_rating(self):
        rating = self.cleaned_data["rating"]
        if rating in (None, ""):
            raise forms.ValidationError("Rate the chat from 1 (bad) to 7 (good).")
        return rating
