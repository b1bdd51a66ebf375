"""`{{ run.duration_ms|duration }}`: a duration in milliseconds as people read it.

A run that waited for an approval took minutes, not "172512 ms": under a second in ms, under a
minute in seconds (one decimal under ten), then minutes and seconds, then hours and minutes.
"""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def duration(milliseconds: float | None) -> str:
    """`12 ms`, `4.2 s`, `38 s`, `2 min 53 s`, `1 h 5 min`; empty for None."""
    if milliseconds is None:
        return ""
    if milliseconds < 1000:
        return f"{round(milliseconds)} ms"
    seconds = milliseconds / 1000
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, seconds_left = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {seconds_left} s" if seconds_left else f"{minutes} min"
    hours, minutes_left = divmod(minutes, 60)
    return f"{hours} h {minutes_left} min" if minutes_left else f"{hours} h"
