"""Typed errors of benchmarking and load testing: each says what was wrong and what to do.

    >>> from flowscope.performance import Benchmark, InvalidLoadParameterError
    >>> try:
    ...     Benchmark().load_test(DocumentApproval, concurrent_executions=0)
    ... except InvalidLoadParameterError as err:
    ...     print(err)
    concurrent_executions must be at least 1, got 0: ...

Design decision: every error subclasses :class:`BenchmarkError` *and* the builtin a caller
would already catch for that kind of mistake (``ValueError`` for a bad value, ``TypeError`` for
a wrong kind of object), so ``except ValueError`` keeps working; the command line maps every
``BenchmarkError`` to one ``Error: ...`` line and exit status 2. They are raised before
anything runs (no database is written, no process started) except
:class:`LoadTestSetupError`, which reports a worker that could not get ready.
"""

from __future__ import annotations


class BenchmarkError(Exception):
    """Base class of every error raised by ``flowscope.performance``'s benchmarks and load tests."""


class InvalidBenchmarkError(BenchmarkError, ValueError):
    """A comparison or benchmark was asked for with values it cannot honour."""


class InvalidLoadParameterError(BenchmarkError, ValueError):
    """A load-test parameter (concurrency, operations, mode, workers) is out of range."""


class NotAWorkflowClassError(BenchmarkError, TypeError):
    """The load-test target is not a :class:`~flowscope.workflows.Workflow` subclass."""

    def __init__(self, value: object) -> None:
        self.value = value
        described = value if isinstance(value, str) else f"{value!r} ({type(value).__name__})"
        super().__init__(
            f"{described} is not a workflow class: pass a subclass of flowscope.workflows.Workflow "
            "(or its 'module:ClassName' path), e.g. flowscope.examples:DocumentApproval")


class NoInitialActionError(BenchmarkError, ValueError):
    """The workflow's initial step offers no action, so a load test would perform nothing."""

    def __init__(self, workflow: str, step: str) -> None:
        self.workflow = workflow
        self.step = step
        super().__init__(
            f"{workflow} has no action at its initial step {step!r} (it is a final step), so no "
            "execution could perform any operation; declare actions on the first step, e.g. "
            "step(submit='review')")


class ImportTargetError(BenchmarkError, ValueError):
    """A ``module:name`` target cannot be imported or is not what was expected."""

    def __init__(self, target: str, reason: str) -> None:
        self.target = target
        self.reason = reason
        super().__init__(f"cannot use {target!r}: {reason}")


class InvalidPolicyError(BenchmarkError, TypeError):
    """An ``action_policy`` that is neither a known name, an ``ActionPolicy`` nor a callable."""


class NotPicklableError(BenchmarkError, TypeError):
    """``mode='processes'`` needs everything sent to the workers to be importable by name."""


class LoadTestDatabaseError(BenchmarkError, ValueError):
    """The load test's database URL cannot be parsed, needs a missing driver, or does not connect."""


class LoadTestSetupError(BenchmarkError, RuntimeError):
    """A worker could not get ready (import the workflow, connect, create the workflowables)."""
