"""Template filters. Guidelines and model output are untrusted: Markdown is rendered with raw HTML off and the
result sanitised by nh3 before it is marked safe."""

from __future__ import annotations

import nh3
from django import template
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

register = template.Library()

# "commonmark" with html=False: any HTML in the source is shown as text, never interpreted.
# "breaks": a single newline is a line break, as people (and models) mean it in chat: poems, addresses, lists.
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "breaks": True}).enable("table")
_ALLOWED_TAGS = {
    "p",
    "br",
    "hr",
    "strong",
    "em",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "a",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
}


def render_markdown(text: str) -> str:
    html = _markdown.render(text or "")
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes={"a": {"href", "title"}, "th": {"align"}, "td": {"align"}},
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )


@register.filter(name="markdown")
def markdown_filter(text: str) -> SafeString:
    return mark_safe(render_markdown(text))  # noqa: S308 - sanitised by nh3 above


@register.filter
def posted(form, name) -> list[str]:
    """The values a bound form was posted with for `name` (to re-check boxes after an error)."""
    if form is None or not form.is_bound:
        return []
    return form.data.getlist(str(name))


@register.filter
def prefixed(message_id, prefix: str) -> str:
    """`{{ id|prefixed:"rank_" }}` -> "rank_12": the per-candidate field names of the ranking form."""
    return f"{prefix}{message_id}"


EMPTY = "—"


@register.filter
def percent(value: float | None, digits: int = 0) -> str:
    """0.873 -> "87%"; None or a missing value (nothing to measure yet) -> "—"."""
    return EMPTY if not isinstance(value, int | float) else f"{value * 100:.{int(digits)}f}%"


@register.filter
def decimal(value: float | None, digits: int = 2) -> str:
    """A statistic such as alpha or tau, with a true minus sign; None -> "—"."""
    return EMPTY if not isinstance(value, int | float) else f"{value:.{int(digits)}f}".replace("-", "\N{MINUS SIGN}")


@register.filter
def seconds(value: float | None) -> str:
    """A duration in seconds, read at a glance: "42 s", "3 min 5 s"; None -> "—"."""
    if value is None:
        return EMPTY
    if value < 60:
        return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


@register.filter
def get(mapping, key):
    """mapping[key] in a template (None when missing)."""
    return mapping.get(key) if hasattr(mapping, "get") else None


@register.filter
def queue_count(value: int) -> str:
    """A labeler's queue size; counts stop at the cap ("1,000+")."""
    from annotate.selectors import QUEUE_COUNT_CAP

    return f"{QUEUE_COUNT_CAP:,}+" if value > QUEUE_COUNT_CAP else f"{value:,}"
