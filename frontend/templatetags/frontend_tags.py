from __future__ import annotations

from typing import Any

from django import template
from django.utils.safestring import SafeString

from annotate.services import user_can_create_projects
from frontend.markdown import render_markdown

register = template.Library()


@register.simple_tag(takes_context=True)
def can_create_projects(context: template.Context) -> bool:
    """Whether the signed-in user may create projects (the nav shows "New project" then)."""
    request = context.get("request")
    user = getattr(request, "user", None)
    return user is not None and user_can_create_projects(user)


@register.filter(name="markdown")
def markdown_filter(text: str, heading_offset: int = 0) -> SafeString:
    """`{{ text|markdown:2 }}` renders with headings moved two levels down (`#` becomes h3)."""
    return render_markdown(text, heading_offset=int(heading_offset))


@register.filter
def get_item(mapping: dict[str, Any], key: str) -> Any:
    return mapping.get(key) if mapping else None
