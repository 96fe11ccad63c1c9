"""GitHub Actions annotations for ``flowscope check``: findings shown on the pull request's lines.

    $ flowscope check scenarios/list_books.py --annotations github
    ::error file=scenarios/list_books.py,line=36,title=flowscope n_plus_one in list_books::N+1 query ...

Design decisions:
- The workflow-command format GitHub documents (``::error file=...,line=...,title=...::message``,
  with ``%``, CR and LF escaped in the message, and ``:`` and ``,`` too in properties), printed
  on standard output: no token, no API call, nothing to configure in the workflow.
- A recommendation at or above ``--fail-on`` is an ``error``, one below it a ``warning``; the
  file and line come from the finding's call site (the application line that ran the repeated
  statement), so an N+1 lands on the line to fix. A finding without a call site is annotated
  without a file.
"""

from __future__ import annotations

import re

from ._check import CheckResult
from .optimizations._recommendation import Recommendation

_CALL_SITE = re.compile(r"^(?P<file>.+?):(?P<line>\d+)(?: in .*)?$")


def github_annotations(result: CheckResult) -> list[str]:
    """One workflow command per recommendation of the check's report, most valuable first."""
    failing = {id(r) for r in result.failing}
    return [_annotation(rec, "error" if id(rec) in failing else "warning") for rec in result.report.recommendations]


def _annotation(rec: Recommendation, level: str) -> str:
    properties = {"title": f"flowscope {rec.kind} in {rec.operation}"}
    site = _CALL_SITE.match(rec.evidence.call_site or "")
    if site:
        properties = {"file": site["file"], "line": site["line"], **properties}
    message = f"{rec.message}\nFix: {rec.suggestion}"
    if rec.evidence.fingerprint:
        message += f"\nStatement: {rec.evidence.fingerprint}"
    listed = ",".join(f"{key}={_escape_property(value)}" for key, value in properties.items())
    return f"::{level} {listed}::{_escape_data(message)}"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")
