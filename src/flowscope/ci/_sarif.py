"""``flowscope check --sarif FILE``: the findings as SARIF 2.1.0, for GitHub code scanning.

    $ flowscope check --sarif flowscope.sarif scenarios/list_books.py
    # then, in GitHub Actions: github/codeql-action/upload-sarif with sarif_file: flowscope.sarif

One rule per finding kind (``n_plus_one``, ``write_loop``, ...), one result per finding at its
call site, repository-relative (``uriBaseId: %SRCROOT%``, the directory ``check`` ran in). The
level is ``error`` at or above ``--fail-on``, ``warning`` below. ``partialFingerprints`` carry
the finding's stable identity (see _identity), so code scanning tracks one alert across runs
and line moves. A finding with no call site is reported without a location (SARIF allows it;
GitHub shows it on the repository). Validated against the official SARIF 2.1.0 JSON schema in
tests/test_sarif.py.
"""

from __future__ import annotations

import json
import os
from typing import Any

from .._version import __version__
from ..analysis._recommendation import KINDS, Recommendation
from ._check import CheckResult
from ._formats import details
from ._identity import call_site_parts, identity

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"

_RULE_TEXT = {
    "n_plus_one": "A query per row (N+1): the same SELECT with other parameters, once per parent row",
    "write_loop": "A write per row: the same INSERT/UPDATE/DELETE once per row instead of one executemany",
    "repeated_query": "The same query with the same parameters, repeated in one operation",
    "slow_query": "A statement slow on average",
    "missing_index": "A full scan of a large table on a filtered column without an index",
    "high_query_count": "An operation that runs many queries",
    "slow_operation": "An operation slow at its 95th percentile",
    "memory_growth": "An operation that grows resident memory",
    "large_context": "A workflow execution whose stored context is large",
    "history_growth": "A workflow execution with a long transition history",
    "unused_eager_load": "A relationship loaded eagerly that no code of the operation reads",
}


def sarif_log(result: CheckResult) -> dict[str, Any]:
    """The check as a SARIF 2.1.0 log (a dict; :func:`sarif_json` serializes it)."""
    failing = {id(r) for r in result.failing}
    recommendations = result.report.recommendations
    used = sorted({r.kind for r in recommendations}, key=KINDS.index)
    rules = [{"id": kind, "name": kind, "shortDescription": {"text": _RULE_TEXT[kind]},
              "help": {"text": f"What fires {kind}, what never does, and the fix: flowscope's "
                               f"docs/recommendations.md, section `{kind}`."},
              "properties": {"tags": ["performance", "database"]}}
             for kind in used]
    index = {kind: i for i, kind in enumerate(used)}
    results = [_result(rec, index[rec.kind], "error" if id(rec) in failing else "warning") for rec in recommendations]
    root = os.getcwd().replace(os.sep, "/").rstrip("/") + "/"
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "flowscope", "version": __version__, "rules": rules}},
            "originalUriBaseIds": {"%SRCROOT%": {"uri": "file://" + root}},
            "results": results,
        }],
    }


def sarif_json(result: CheckResult) -> str:
    return json.dumps(sarif_log(result), indent=2)


def _result(rec: Recommendation, rule_index: int, level: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ruleId": rec.kind, "ruleIndex": rule_index, "level": level, "message": {"text": details(rec)},
        "partialFingerprints": {"flowscopeFinding/v1": identity(rec).digest()},
        "properties": {"operation": rec.operation, "severity": rec.severity,
                       "estimatedSavingsQueries": rec.estimated_savings.queries,
                       "estimatedSavingsMs": rec.estimated_savings.milliseconds},
    }
    file, line, _ = call_site_parts(rec.evidence.call_site)
    if file is not None and line is not None:
        location: dict[str, Any] = {"uri": file.replace(os.sep, "/")}
        if os.path.isabs(file):
            location = {"uri": "file://" + location["uri"]}
        else:
            location["uriBaseId"] = "%SRCROOT%"
        out["locations"] = [{"physicalLocation": {"artifactLocation": location,
                                                  "region": {"startLine": max(line, 1)}}}]
    return out
