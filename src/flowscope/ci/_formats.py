"""``flowscope check`` for CI systems: GitHub Actions annotations and JUnit XML.

    $ flowscope check --annotations github scenarios/list_books.py
    ::error file=scenarios/list_books.py,line=36,title=flowscope n_plus_one in list_books::N+1 query ...
    $ flowscope check --junit flowscope-check.xml scenarios/list_books.py

One finding per recommendation of the check's report: a failure (``error``) when it is at or
above ``--fail-on``, a warning / passing test case below it, located at the finding's call site
(the application line that ran the repeated statement) when it has one, so an N+1 lands on the
line to fix.

Design decisions:
- GitHub: the workflow-command format GitHub documents (``::error file=...,line=...,title=...::``,
  with ``%``, CR and LF escaped in the message, and ``:`` and ``,`` too in properties), printed
  on standard output: no token, no API call, nothing to configure in the workflow.
- JUnit XML, which GitLab, Jenkins, Azure Pipelines and most CI systems show as test results:
  a test case per finding named after its operation and kind, a ``failure`` at or above
  ``--fail-on``, passing below (its text in ``system-out``); a report with no recommendation is
  one passing test case, so the suite is never empty. Built with ``xml.etree`` (its escaping).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ..analysis._recommendation import Recommendation
from ._check import CheckResult
from ._identity import call_site_parts


def github_annotations(result: CheckResult) -> list[str]:
    """One workflow command per recommendation of the check's report, most valuable first."""
    failing = {id(r) for r in result.failing}
    return [_annotation(rec, "error" if id(rec) in failing else "warning") for rec in result.report.recommendations]


def junit_xml(result: CheckResult, suite: str = "flowscope check") -> str:
    """The check as a JUnit XML document."""
    failing = {id(r) for r in result.failing}
    recommendations = result.report.recommendations
    counts = {"tests": str(max(1, len(recommendations))), "failures": str(len(result.failing)), "errors": "0"}
    testsuites = ET.Element("testsuites", name=suite, **counts)
    testsuite = ET.SubElement(testsuites, "testsuite", name=suite, skipped="0", **counts)
    for rec in recommendations:
        case = ET.SubElement(testsuite, "testcase", classname=f"flowscope.{rec.kind}",
                             name=f"{rec.operation}: {rec.kind}", **_location(rec))
        if id(rec) in failing:
            failure = ET.SubElement(case, "failure", message=f"{rec.severity}: {rec.message}",
                                    type=f"flowscope.{rec.kind}")
            failure.text = details(rec)
        else:
            ET.SubElement(case, "system-out").text = f"{rec.severity} (below --fail-on {result.fail_on}): {details(rec)}"
    if not recommendations:
        ET.SubElement(testsuite, "testcase", classname="flowscope", name="no recommendation")
    ET.indent(testsuites)
    return ET.tostring(testsuites, encoding="unicode", xml_declaration=True)


def _location(rec: Recommendation) -> dict[str, str]:
    """``{"file": ..., "line": ...}`` from the finding's call site, or nothing."""
    file, line, _ = call_site_parts(rec.evidence.call_site)
    return {"file": file, "line": str(line)} if file is not None else {}


def details(rec: Recommendation) -> str:
    """The finding as text for a CI system: its message, the fix, the statement."""
    text = f"{rec.message}\nFix: {rec.suggestion}"
    if rec.evidence.fingerprint:
        text += f"\nStatement: {rec.evidence.fingerprint}"
    return text


def _annotation(rec: Recommendation, level: str) -> str:
    properties = {**_location(rec), "title": f"flowscope {rec.kind} in {rec.operation}"}
    listed = ",".join(f"{key}={_escape_property(value)}" for key, value in properties.items())
    return f"::{level} {listed}::{_escape_data(details(rec))}"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")
