"""RFC 7386 JSON merge patch, and the patch between two documents.

Ours, not a library's: json-merge-patch (the one maintained package) changes its target in place
and is untyped; these twenty lines copy, are typed, and also combine patches (`keep_nulls`).
"""

from __future__ import annotations

from typing import Any


def merge_patch(target: Any, patch: Any, *, keep_nulls: bool = False) -> Any:
    """`target` with the merge `patch` applied; neither is changed.

    Objects merge key by key, `null` removes a key, anything else replaces; a `target` that is
    not an object counts as an empty one, as the RFC says. `keep_nulls` keeps the nulls instead,
    to combine two patches into one before applying it.
    """
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None and not keep_nulls:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value, keep_nulls=keep_nulls)
    return merged


def merge_patch_between(source: Any, target: dict[str, Any]) -> dict[str, Any]:
    """The merge patch that turns `source` into `target` (`merge_patch(source, it) == target`).

    Only what differs is in it: applied to a newer `source`, it keeps the newer keys it does not
    touch. Assumes `target` holds no `null`s (a merge patch cannot write one).
    """
    if not isinstance(source, dict):
        return dict(target)
    patch: dict[str, Any] = dict.fromkeys(source.keys() - target.keys())
    for key, value in target.items():
        old = source.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            nested = merge_patch_between(old, value)
            if nested:
                patch[key] = nested
        elif key not in source or old != value:
            patch[key] = value
    return patch
