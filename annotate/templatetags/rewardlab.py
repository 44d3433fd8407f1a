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
