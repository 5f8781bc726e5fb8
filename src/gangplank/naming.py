"""Turning Keras log keys into valid Prometheus metric names.

The rule: every character outside ``[a-zA-Z0-9_:]`` becomes ``_``, and a name
that would start with a digit gets a leading ``_``. Names that collide after
that (``"f1-score"`` and ``"f1 score"``) get ``_2``, ``_3`` … in the order the
keys were given, so no two exported metrics ever share a name. A key that is
already a valid name keeps it: ``"f1_score"`` stays ``f1_score`` even when
``"f1-score"`` comes first (which then becomes ``f1_score_2``).

Example:
    >>> sanitise_name("top 5 acc")
    'top_5_acc'
    >>> unique_names(["f1-score", "f1 score"], reserved={"loss"})
    {'f1-score': 'f1_score', 'f1 score': 'f1_score_2'}
    >>> unique_names(["f1-score", "f1_score"])
    {'f1-score': 'f1_score_2', 'f1_score': 'f1_score'}
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_INVALID = re.compile(r"[^a-zA-Z0-9_:]")


def sanitise_name(key: str) -> str:
    """Return ``key`` with every character a Prometheus name forbids replaced by ``_``."""
    name = _INVALID.sub("_", str(key))
    if not name or name[0].isdigit():
        name = "_" + name
    return name


def unique_names(keys: Iterable[str], reserved: Iterable[str] = ()) -> dict[str, str]:
    """Map each key to a sanitised name distinct from the others and from ``reserved``."""
    keys = list(dict.fromkeys(keys))
    taken = set(reserved)
    names: dict[str, str] = {}
    # Keys that are valid names already keep them (first come, first served
    # among equals), so a user's "f1_score" is not renamed because of an
    # "f1-score" logged before it; then the others, in order.
    for key in keys:
        if sanitise_name(key) == key and key not in taken:
            taken.add(key)
            names[key] = key
    for key in keys:
        if key in names:
            continue
        base = sanitise_name(key)
        name, suffix = base, 2
        while name in taken:
            name, suffix = f"{base}_{suffix}", suffix + 1
        taken.add(name)
        names[key] = name
    return {key: names[key] for key in keys}
