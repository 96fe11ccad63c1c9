"""``flowscope check``: run a scenario with flowscope on, and fail on what the report finds.

    >>> result = run_check("scenarios/checkout.py", fail_on="medium")
    >>> result.passed, [r.kind for r in result.failing]
    (False, ['n_plus_one'])

    $ flowscope check scenarios/checkout.py                  # exit 1 on a medium or high finding
    $ flowscope check --fail-on high --json flowscope-check.json myapp.jobs:nightly

Design decisions:
- The scenario runs in this process, after ``flowscope.configure(instrument=True)`` and with
  the installed OpenTelemetry instrumentations on (Flask, FastAPI, ...): a script as
  ``__main__`` (``runpy``, its folder first on ``sys.path``, its arguments in ``sys.argv``),
  or a zero-argument ``module:function``. It is itself one root operation (named after the
  script or ``module:function``), so everything it runs is measured: the requests and tasks
  inside it are nested operations, and each finding belongs to the innermost operation.
- Queries outside any operation (another thread without the scenario's context) are reported;
  when they are all there is, the check does not pass (``unmeasured_only``).
- The verdict comes from the process report, so from the same rules as every other report
  (``_findings``): a CI gate with a rule set of its own would drift from what the
  recommendations say. A recommendation at or above ``fail_on`` fails the check.
- A scenario that cannot run (not found, or it raised) is a :class:`CheckError`: no verdict,
  and ``flowscope check`` exits 2, not 1, so CI tells "slow" from "broken".
"""

from __future__ import annotations

import os
import runpy
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..analysis._recommendation import Recommendation
from ..benchmark._targets import callable_target
from ..reports._process_report import ProcessReport, process_report
from ..telemetry import configure, install_eager_load_audit, operation, uninstall_eager_load_audit
from ..telemetry._contrib import instrument_installed
from ..telemetry.sql._eager_audit import eager_load_audit_installed
from ._baseline import BaselineComparison, compare
from ._identity import FindingIdentity
from ._project_config import FAIL_ON, IgnoreRule, ProjectConfig

_RANK = {"low": 1, "medium": 2, "high": 3, "never": 4}


class CheckError(ValueError):
    """The scenario could not be run to the end, so there is no verdict."""


@dataclass(frozen=True)
class CheckResult:
    report: ProcessReport                 # its recommendations: those no ignore rule matched
    fail_on: str
    failing: tuple[Recommendation, ...]   # recommendations at or above ``fail_on`` (new ones, with a baseline)
    ignored: tuple[tuple[Recommendation, IgnoreRule], ...] = ()
    baseline: BaselineComparison | None = None
    config: ProjectConfig | None = None

    @property
    def unmeasured_only(self) -> str | None:
        """Why there is no verdict to trust: queries ran and no operation measured any of them."""
        missing = self.report.unmeasured.queries
        if missing and self.report.measured_queries == 0:
            return (f"{missing} queries ran outside any operation and none was measured, so no rule could "
                    "see them")
        return None

    @property
    def passed(self) -> bool:
        return not self.failing and self.unmeasured_only is None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "passed": self.passed, "fail_on": self.fail_on, "unmeasured_only": self.unmeasured_only,
            "failing": [r.to_dict() for r in self.failing],
            "ignored": [{"finding": rec.to_dict(), "reason": rule.reason} for rec, rule in self.ignored],
            "config": self.config.source if self.config is not None else None}
        if self.baseline is not None:
            out["baseline"] = {"new": len(self.baseline.new), "known": len(self.baseline.known),
                               "gone": [asdict(key) for key in self.baseline.gone]}
        out["report"] = self.report.to_dict()
        return out


def run_check(target: str, args: Sequence[str] = (), fail_on: str = "medium", *,
              config: ProjectConfig | None = None,
              baseline: Sequence[FindingIdentity] | None = None) -> CheckResult:
    """Run ``target`` (a ``.py`` file or ``module:function``) measured; judge the report.

    ``config`` (``[tool.flowscope]``, see _project_config) gives the thresholds and the ignore
    rules; with a ``baseline`` (see _baseline) only findings not in it can fail the check.
    """
    if fail_on not in _RANK:
        raise CheckError(f"fail_on={fail_on!r}: expected one of {', '.join(FAIL_ON)}")
    config = config or ProjectConfig()
    telemetry = configure(instrument=True)
    instrument_installed()
    audited = eager_load_audit_installed()
    install_eager_load_audit()
    try:
        with operation(_root_name(target)):
            _run(target, list(args))
    finally:
        if not audited:   # called in a process that goes on (a test, a notebook): as it was
            uninstall_eager_load_audit()
    report = process_report(telemetry.aggregator, config.thresholds, span_store=telemetry.span_store)
    kept, ignored = config.split(report.recommendations)
    report = replace(report, recommendations=kept)
    compared = compare(kept, baseline) if baseline is not None else None
    candidates = compared.new if compared is not None else kept
    failing = tuple(r for r in candidates if _RANK[r.severity] >= _RANK[fail_on])
    return CheckResult(report, fail_on, failing, ignored, compared, config)


def _root_name(target: str) -> str:
    """The scenario's own operation: the script's file name, or ``module:function``."""
    return os.path.basename(target) if target.endswith(".py") or os.path.sep in target else target


def _run(target: str, args: list[str]) -> None:
    if target.endswith(".py") or os.path.sep in target:
        if not os.path.isfile(target):
            raise CheckError(f"{target}: no such script (give a .py file or module:function)")
        _run_script(target, args)
        return
    if args:
        raise CheckError(f"{target}: arguments are for scripts; a module:function is called without any")
    function = callable_target(target, from_current_directory=True)
    try:
        function()
    except Exception as err:
        raise CheckError(f"{target} raised {type(err).__name__}: {err}") from err


def _run_script(path: str, args: list[str]) -> None:
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [path, *args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as done:
        if done.code not in (None, 0):
            raise CheckError(f"{path} exited with status {done.code}") from None
    except Exception as err:
        raise CheckError(f"{path} raised {type(err).__name__}: {err}") from err
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
