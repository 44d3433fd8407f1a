from django import forms


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
