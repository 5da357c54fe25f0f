"""How a person names a run: its id, a prefix of it, ``project/id`` or its store key.

Pure rules, no I/O: the command line parses what was typed with :func:`parse_run_ref`, lists
candidates from the backend, and picks with :func:`matching_ids`; :func:`short_id_length`
says how much of each id a listing must show to tell its runs apart.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import attrs

from .errors import ValidationError
from .records import check_kind, check_name

STORE_SCHEME = "store://"
"""Scheme of a run's store key, ``store://<project>/run/<kind>/<id>`` (``Run.key``)."""
SHORT_ID = 8
"""Characters of an id a listing shows at least (more when needed to tell runs apart)."""


@attrs.frozen
class RunRef:
    """A run as named on a command line.

    Attributes:
        id: The run's id, or the start of it.
        project: The project named with it (``project/id``, a store key), if any.
        kind: The kind named with it (a store key), if any.
    """

    id: str
    project: str | None = None
    kind: str | None = None


_FORMS = "an ID, the start of one, PROJECT/ID or store://PROJECT/run/KIND/ID"


def parse_run_ref(text: str) -> RunRef:
    """Read ``id``, ``project/id`` or ``store://project/run/kind/id``.

    Raises:
        ValidationError: if ``text`` is none of these, saying which forms are accepted.
    """
    value = text.strip()
    try:
        if value.startswith(STORE_SCHEME):
            parts = value[len(STORE_SCHEME) :].split("/")
            if len(parts) != 4 or parts[1] != "run":
                raise ValueError("a store key is store://PROJECT/run/KIND/ID")
            project, _, kind, id_ = parts
            return RunRef(check_name("id", id_), check_name("project", project), check_kind(kind))
        if "/" in value:
            project, _, id_ = value.partition("/")
            return RunRef(check_name("id", id_), check_name("project", project))
        return RunRef(check_name("id", value))
    except ValueError as exc:
        raise ValidationError(f"{text!r} names no run: give {_FORMS} ({exc})") from None


def matching_ids(prefix: str, ids: Iterable[str]) -> list[str]:
    """The ids ``prefix`` names: the id equal to it if there is one, else those it starts."""
    candidates = list(dict.fromkeys(ids))
    if prefix in candidates:
        return [prefix]
    return [one for one in candidates if one.startswith(prefix)]


def short_id_length(ids: Sequence[str], minimum: int = SHORT_ID) -> int:
    """The fewest characters, ``minimum`` or more, that keep every id of ``ids`` distinct.

    An id shorter than that is shown whole; two ids one of which starts the other need the
    longer one's length.
    """
    ordered = sorted(set(ids))
    length = minimum
    for left, right in itertools.pairwise(ordered):
        common = 0
        for a, b in zip(left, right, strict=False):
            if a != b:
                break
            common += 1
        length = max(length, common + 1)
    return length
