"""Formatting for the dashboard's stored statistics.

An undefined number (value null with a reason, docs/agreement-report.md) shows as "n/a" with the
reason in a tooltip and, for screen readers, in visually hidden text; never as "NaN" or "None".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

# These run a few thousand times on a page (every cell of the over-time tables), so they build their
# HTML with f-strings around escaped text instead of format_html.


def not_available(reason: str | None) -> SafeString:
    text = escape(reason or "not enough data")
    return mark_safe(
        f'<span class="na" title="{text}">n/a<span class="visually-hidden"> ({text})</span></span>'
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _format(value: float, style: str) -> str:
    if style == "pct":
        return f"{100 * value:.1f}%"
    return f"{value:.3f}"


@register.filter
def metric(data: Any, style: str = "") -> SafeString:
    """`{{ block.alpha|metric }}` -> 0.743; `{{ m|metric:"pct" }}` -> 87.5%; undefined -> n/a (reason)."""
    if not isinstance(data, Mapping):
        return not_available("not in this report")
    value = _number(data.get("value"))
    if value is None:
        return not_available(data.get("reason"))
    units = data.get("n_units")
    units = units if isinstance(units, int) and not isinstance(units, bool) else 0
    return mark_safe(f'<span title="{units} units">{_format(value, style)}</span>')


@register.filter
def interval(data: Any) -> SafeString:
    """A bootstrap interval as "0.69 to 0.79" (an en dash between), or n/a with its reason."""
    if not isinstance(data, Mapping):
        return not_available("not in this report")
    low, high = _number(data.get("low")), _number(data.get("high"))
    if low is None or high is None:
        return not_available(data.get("reason"))
    return mark_safe(f"{low:.2f}&thinsp;&ndash;&thinsp;{high:.2f}")


@register.filter
def rate(data: Any, reason: str = "") -> SafeString:
    """A share (0..1) as a percentage. Takes a bare number or a {"rate", "reason"} block."""
    if isinstance(data, Mapping):
        reason = data.get("reason") or reason
        data = data.get("rate")
    value = _number(data)
    if value is None:
        return not_available(reason or None)
    return mark_safe(_format(value, "pct"))


@register.filter
def duration_ms(value: Any) -> SafeString:
    """Milliseconds as "14.0 s" or "2 min 05 s"."""
    ms = _number(value)
    if ms is None:
        return not_available("no timed labels")
    seconds = ms / 1000
    if seconds < 60:
        return mark_safe(f"{seconds:.1f} s")
    minutes, rest = divmod(round(seconds), 60)
    return mark_safe(f"{minutes} min {rest:02d} s")


@register.simple_tag
def query_with(params: Any, **changes: Any) -> str:
    """The current query string with some parameters changed; an empty value drops the parameter."""
    merged = params.copy()
    for key, value in changes.items():
        if value is None or value == "":
            merged.pop(key, None)
        else:
            merged[key] = str(value)
    encoded = merged.urlencode()
    return f"?{encoded}" if encoded else "?"
