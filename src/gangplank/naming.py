"""Turning Keras log keys into valid Prometheus metric names.

The rule: every character outside ``[a-zA-Z0-9_:]`` becomes ``_``, and a name
that would start with a digit gets a leading ``_``. Names that collide after
that (``"f1-score"`` and ``"f1 score"``) get ``_2``, ``_3`` … in the order the
keys were given, so no two exported metrics ever share a name.

Example:
    >>> sanitise_name("top 5 acc")
    'top_5_acc'
    >>> unique_names(["f1-score", "f1 score"], reserved={"loss"})
    {'f1-score': 'f1_score', 'f1 score': 'f1_score_2'}
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
    taken = set(reserved)
    names: dict[str, str] = {}
    for key in keys:
        base = sanitise_name(key)
        name, suffix = base, 2
        while name in taken:
            name, suffix = f"{base}_{suffix}", suffix + 1
        taken.add(name)
        names[key] = name
    return names
