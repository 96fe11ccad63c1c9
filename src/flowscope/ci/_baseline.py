"""Baselines: adopt ``flowscope check`` on a codebase with known findings, fail only on new ones.

    $ flowscope check --write-baseline flowscope-baseline.json scenarios/smoke.py   # today's findings
    $ flowscope check --baseline flowscope-baseline.json scenarios/smoke.py   # fails on new ones only

A baseline is a JSON file of finding identities (see _identity: kind, operation, statement
fingerprint, relationship, file and function; no line, so moving code within its function keeps
a finding known), sorted so that it diffs well under version control. Comparing a run with it
tells new findings (they can fail the check), known ones (reported, never failing) and gone
ones (in the baseline, not seen: fixed, or not exercised by this run).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..analysis._recommendation import Recommendation
from ._identity import FindingIdentity, identity

FORMAT = "flowscope-baseline"
VERSION = 1


class BaselineError(ValueError):
    """A baseline file that cannot be read as one."""


@dataclass(frozen=True)
class BaselineComparison:
    new: tuple[Recommendation, ...]
    known: tuple[Recommendation, ...]
    gone: tuple[FindingIdentity, ...]


def baseline_json(recommendations: Iterable[Recommendation]) -> str:
    entries = {identity(rec): rec for rec in recommendations}
    ordered = sorted(entries.items(), key=lambda item: tuple(str(v) for v in asdict(item[0]).values()))
    findings = [{**asdict(key), "severity": rec.severity, "message": rec.message} for key, rec in ordered]
    return json.dumps({"format": FORMAT, "version": VERSION, "findings": findings}, indent=2) + "\n"


def read_baseline(path: str | Path) -> tuple[FindingIdentity, ...]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise BaselineError(f"--baseline {path}: cannot read it ({err.strerror or err}); write one with "
                            f"--write-baseline {path}") from None
    except json.JSONDecodeError as err:
        raise BaselineError(f"--baseline {path}: not JSON ({err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("findings"), list):
        raise BaselineError(f"--baseline {path}: not a flowscope baseline (write one with --write-baseline)")
    if data.get("version") != VERSION:
        raise BaselineError(f"--baseline {path}: version {data.get('version')!r}, this flowscope reads {VERSION}")
    names = FindingIdentity.__dataclass_fields__
    try:
        return tuple(FindingIdentity(**{name: entry.get(name) for name in names}) for entry in data["findings"])
    except AttributeError:
        raise BaselineError(f"--baseline {path}: each finding must be an object") from None


def compare(recommendations: Iterable[Recommendation], baseline: Iterable[FindingIdentity]) -> BaselineComparison:
    known_ids = set(baseline)
    new, known, seen = [], [], set()
    for rec in recommendations:
        key = identity(rec)
        if key in known_ids:
            known.append(rec)
            seen.add(key)
        else:
            new.append(rec)
    gone = tuple(key for key in dict.fromkeys(baseline) if key not in seen)
    return BaselineComparison(tuple(new), tuple(known), gone)
