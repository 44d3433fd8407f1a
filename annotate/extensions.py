"""Extension points: what another app (the training app) adds to annotate's pages and API, registered from that
app's `AppConfig.ready()`. Annotate never imports the training app; it asks here, and gets nothing when no app has
registered (annotate alone still works).

- **Sections** are blocks of HTML another app renders into one of annotate's pages (`overview`; `export_preview`,
  under the export's preview; `export`, below the export form), in the
  order they were registered. A provider takes the request, the project and the page's own context and returns
  HTML, or "" to add nothing.
- **Candidate scores**: the serving reward model's scores for some replies, shown to researchers beside the
  labelers' verdicts (never to labelers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.utils.safestring import SafeString, mark_safe

SectionProvider = Callable[..., str]
PAGES = ("overview", "export_preview", "export")

_sections: dict[str, list[SectionProvider]] = {page: [] for page in PAGES}


@dataclass(frozen=True)
class CandidateScores:
    """Scores of some replies by one reward model; `model` is its name for people (None: no model serves)."""

    model: str | None = None
    model_id: int | None = None
    scores: dict[int, float] = field(default_factory=dict)


ScoreProvider = Callable[..., CandidateScores]
_score_provider: list[ScoreProvider] = []


def section_register(page: str, provider: SectionProvider) -> None:
    """Add a section to `page` (idempotent: registering the same provider twice adds it once)."""
    if page not in _sections:
        raise ValueError(f"Unknown page {page!r}; sections can be added to {', '.join(PAGES)}.")
    if provider not in _sections[page]:
        _sections[page].append(provider)


def sections(page: str, request, project, **context) -> list[SafeString]:
    """The registered sections of `page`, rendered (the providers escape what they render)."""
    rendered = (provider(request, project, **context) for provider in _sections[page])
    return [mark_safe(html) for html in rendered if html]  # noqa: S308 - providers render through templates


def scores_register(provider: ScoreProvider) -> None:
    """Set the function that scores replies: provider(project=..., message_ids=...) -> CandidateScores."""
    _score_provider[:] = [provider]


def candidate_scores(*, project, message_ids: Iterable[int]) -> CandidateScores:
    if not _score_provider:
        return CandidateScores()
    return _score_provider[0](project=project, message_ids=message_ids)
