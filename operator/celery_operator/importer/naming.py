"""Entry names -> valid, stable Kubernetes object names.

The same source name always gives the same object name. A name that had to be shortened, or
that two entries would share, gets a short hash of its source name as a suffix, so the
result does not depend on which other entries are imported with it.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Mapping

# A PeriodicTask's runs are named <name>-<unix seconds>, which must fit in 63 (the CRD's
# limit on metadata.name); ScheduledTasks use the same limit so both kinds read alike.
NAME_MAX_LENGTH = 52
_HASH_LENGTH = 6
_NOT_ALLOWED = re.compile(r"[^a-z0-9]+")


def _hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:_HASH_LENGTH]


def base_name(source: str) -> str:
    """Lowercase letters and digits, other runs replaced by '-', trimmed to the limit."""
    name = _NOT_ALLOWED.sub("-", source.lower()).strip("-")
    return name or "entry"


def _with_suffix(base: str, source: str) -> str:
    room = NAME_MAX_LENGTH - _HASH_LENGTH - 1
    return f"{base[:room].rstrip('-')}-{_hash(source)}"


def object_names(sources: Iterable[str]) -> Mapping[str, str]:
    """Each distinct source name -> its object name (unique among them)."""
    distinct = sorted(set(sources))
    bases = {source: base_name(source) for source in distinct}
    shared = Counter(bases.values())
    names: dict[str, str] = {}
    for source in distinct:
        base = bases[source]
        clash = shared[base] > 1 or len(base) > NAME_MAX_LENGTH
        names[source] = _with_suffix(base, source) if clash else base
    return names
