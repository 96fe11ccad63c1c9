"""A finding's stable identity: what stays the same when the code around it moves.

    >>> identity(rec)
    FindingIdentity(kind='n_plus_one', operation='GET /api/posts', fingerprint='SELECT ...',
                    relationship='Post.author', file='app/views.py', function='serialize')

Used by baselines (``flowscope check --baseline``) and SARIF (``partialFingerprints``). Design
decision: the line number is left out and the function kept, so a finding survives lines
added above it in the same file and is new when it moves to other code; the fingerprint
(normalized SQL, no parameter values) tells two statements of one function apart.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass

from ..analysis._recommendation import Recommendation

_CALL_SITE = re.compile(r"^(?P<file>.+?):(?P<line>\d+)(?: in (?P<function>.*))?$")


@dataclass(frozen=True)
class FindingIdentity:
    kind: str
    operation: str
    fingerprint: str | None
    relationship: str | None
    file: str | None
    function: str | None

    def digest(self) -> str:
        """A short hex digest of the identity (SARIF ``partialFingerprints``)."""
        text = "\x1f".join(str(value) for value in asdict(self).values())
        return hashlib.sha256(text.encode("utf-8", "backslashreplace")).hexdigest()[:32]


def call_site_parts(call_site: str | None) -> tuple[str | None, int | None, str | None]:
    """``("app/views.py", 36, "serialize")`` from ``"app/views.py:36 in serialize"``."""
    site = _CALL_SITE.match(call_site or "")
    if site is None:
        return None, None, None
    return site["file"], int(site["line"]), site["function"]


def identity(rec: Recommendation) -> FindingIdentity:
    file, _, function = call_site_parts(rec.evidence.call_site)
    return FindingIdentity(kind=rec.kind, operation=rec.operation, fingerprint=rec.evidence.fingerprint,
                           relationship=rec.evidence.relationship, file=file, function=function)
