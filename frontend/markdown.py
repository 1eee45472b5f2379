"""Markdown for text that admins write (project guidelines): rendered, then sanitised.

Markdown passes raw HTML through, so the rendered HTML goes through nh3 (ammonia) with an allow-list
before it is marked safe; a guideline can have tables, lists and links but never a script, a style,
an event handler or a javascript: URL.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import markdown as md
import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor

ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl", "dt", "em",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "kbd", "li", "ol", "p", "pre", "s", "span",
    "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "abbr": {"title"},
    "td": {"align"},
    "th": {"align"},
    "ol": {"start"},
}
URL_SCHEMES = {"http", "https", "mailto"}
EXTENSIONS = ["extra", "sane_lists"]


HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")


class _ShiftHeadings(Treeprocessor):
    def __init__(self, md_instance: md.Markdown, offset: int) -> None:
        super().__init__(md_instance)
        self.offset = offset

    def run(self, root: ET.Element) -> None:
        for element in root.iter():
            if element.tag in HEADINGS:
                element.tag = f"h{min(6, int(element.tag[1]) + self.offset)}"


class ShiftHeadings(Extension):
    """Moves Markdown headings down a level or more, so that a `# Title` in text shown inside a page
    section does not outrank the page's own headings (one h1 per page, for screen-reader outlines)."""

    def __init__(self, offset: int) -> None:
        super().__init__()
        self.offset = offset

    def extendMarkdown(self, md_instance: md.Markdown) -> None:  # the name is Markdown's API
        md_instance.treeprocessors.register(_ShiftHeadings(md_instance, self.offset), "shift_headings", 0)


def render_markdown(text: str, *, heading_offset: int = 0) -> SafeString:
    extensions: list[str | Extension] = [*EXTENSIONS]
    if heading_offset:
        extensions.append(ShiftHeadings(heading_offset))
    html = md.markdown(text or "", extensions=extensions, output_format="html")
    clean = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
    )
    return mark_safe(clean)  # sanitised by nh3 just above
