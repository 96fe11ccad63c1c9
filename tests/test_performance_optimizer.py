"""``PerformanceOptimizer``: all findings together, most valuable first; ``auto_optimize`` applies
exactly what the findings justify and measures the effect by running the same work again;
``optimize_performance`` applies everything; ``revert`` turns it off."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from flowscope.demo import representative_operation
from flowscope.examples import EmployeeOnboarding, OrderFulfillment, seed_employees, seed_orders
from flowscope.performance import Monitor, Thresholds
from flowscope.performance.optimizations import PerformanceOptimizer, _caching, _eager_loading
from flowscope.telemetry import Telemetry
from flowscope.workflows import WorkflowExecution, start_workflow
from support.optimizer_scenarios import SIGN_OFF, no_optimizations_left, select_loop

LARGE = {"notes": ["a long onboarding note " * 4] * 1000}        # ~90 KiB of context
SECRET = "sk_live_0123456789SECRET"


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    with no_optimizations_left():
        yield


def onboarded(session: Session, context: dict | None = None) -> WorkflowExecution:
    """A finished onboarding: its sign-off ran the planted N+1."""
    [employee] = seed_employees(session, 1, role="support")
    session.commit()
    execution = start_workflow(session, EmployeeOnboarding, workflowable=employee, context=context)
    for action in ("order_equipment", "create_accounts", "start_orientation", "complete_orientation"):
        execution.perform_action(action, user="hr")
    return execution


def delivered(session: Session) -> WorkflowExecution:
    """The clean twin: an order picked with one query for all its lines."""
    [order] = seed_orders(session, 1, lines_per_order=5)
    session.commit()
    execution = start_workflow(session, OrderFulfillment, workflowable=order)
    for action in ("pay", "pick", "ship", "deliver"):
        execution.perform_action(action, user="warehouse")
    return execution


def test_recommendations_put_query_memory_and_timing_findings_together_most_valuable_first(
        session: Session, telemetry: Telemetry) -> None:
    execution = onboarded(session, LARGE)

    recs = PerformanceOptimizer(execution, thresholds=Thresholds(slow_operation_ms=0.001)).recommendations()

    assert {"n_plus_one", "large_context", "slow_operation"} <= {r.kind for r in recs}
    assert [r.value_score for r in recs] == sorted((r.value_score for r in recs), reverse=True)


def test_auto_optimize_eager_loads_exactly_the_relationship_of_the_n_plus_one_and_measures_fewer_queries(
        engine: Engine, session: Session, telemetry: Telemetry) -> None:
    execution = onboarded(session)
    optimizer = PerformanceOptimizer(execution)

    result = optimizer.auto_optimize(representative_operation(engine, EmployeeOnboarding, executions=2))

    assert [(f.kind, f.target) for f in result.applied] == [("eager_loading", "OnboardingTask.assignee")]
    assert _eager_loading.enabled() == ("OnboardingTask.assignee",) and _caching.enabled() == ()
    before, after = result.queries_per_operation(SIGN_OFF)
    assert before - after >= 8 - 1                          # one query for all assignees, not one each
    assert result.queries_after < result.queries_before
    for name in ("EmployeeOnboarding.order_equipment", "EmployeeOnboarding.create_accounts"):
        assert result.queries_per_operation(name)[0] == result.queries_per_operation(name)[1]


def test_auto_optimize_on_the_clean_twin_applies_nothing_and_runs_nothing(
        session: Session, telemetry: Telemetry) -> None:
    execution = delivered(session)

    result = PerformanceOptimizer(execution).auto_optimize(lambda: pytest.fail("nothing to measure"))

    assert result.applied == () and result.before is None and result.after is None
    assert "no finding" in result.note


def test_auto_optimize_given_no_operation_applies_the_fix_and_says_nothing_was_measured(
        session: Session, telemetry: Telemetry) -> None:
    execution = onboarded(session)

    result = PerformanceOptimizer(execution).auto_optimize()

    assert [fix.target for fix in result.applied] == ["OnboardingTask.assignee"]
    assert result.before is None and result.after is None
    assert result.queries_per_operation(SIGN_OFF) == (None, None)
    assert "pass representative_operation=" in result.note


def test_auto_optimize_compacts_a_large_context_and_says_why(engine: Engine, session: Session,
                                                             telemetry: Telemetry) -> None:
    execution = onboarded(session, LARGE)

    result = PerformanceOptimizer(execution).auto_optimize(lambda: None)

    [memory] = [f for f in result.applied if f.kind == "memory"]
    assert memory.target == f"EmployeeOnboarding execution {execution.id}"
    assert "large_context" in memory.because
    assert result.memory.bytes_after < result.memory.bytes_before
    assert execution.resolved_context()["notes"] == LARGE["notes"]


def test_auto_optimize_lists_the_findings_it_cannot_fix(session: Session, telemetry: Telemetry) -> None:
    execution = delivered(session)
    with Monitor(execution).monitor_operation("core_loop"):
        select_loop(session, 6)

    result = PerformanceOptimizer(execution).auto_optimize(lambda: None)

    assert result.applied == ()
    [skipped] = result.not_applied
    assert (skipped.kind, skipped.operation) == ("n_plus_one", "core_loop")
    assert "WHERE ... IN" in skipped.reason


def test_optimize_performance_applies_eager_loading_caches_and_the_memory_policy_and_measures(
        engine: Engine, session: Session, telemetry: Telemetry) -> None:
    execution = onboarded(session, LARGE)

    result = PerformanceOptimizer(execution).optimize_performance(
        representative_operation(engine, EmployeeOnboarding, executions=2))

    assert {f.kind for f in result.applied} == {"eager_loading", "caching", "memory"}
    assert sorted(_caching.enabled()) == sorted(("workflow_definition", "step_definitions", "available_actions"))
    assert result.queries_after < result.queries_before
    assert result.memory is not None and result.memory.moved


def test_optimize_performance_needs_an_operation_to_measure(telemetry: Telemetry) -> None:
    with pytest.raises(ValueError, match="representative_operation"):
        PerformanceOptimizer().optimize_performance()


def test_revert_turns_off_what_the_optimizer_enabled(engine: Engine, session: Session, telemetry: Telemetry) -> None:
    execution = onboarded(session)
    optimizer = PerformanceOptimizer(execution)
    optimizer.optimize_performance(lambda: None)

    optimizer.revert()

    assert _eager_loading.enabled() == () and _caching.enabled() == ()


def test_recommendations_and_results_hold_no_parameter_or_secret_context_values(
        session: Session, telemetry: Telemetry) -> None:
    execution = onboarded(session, {**LARGE, "api_key": SECRET, "password": SECRET + "-pw"})
    with Monitor(execution).monitor_operation("secret_lookups"):
        for i in range(6):
            session.execute(text("SELECT id FROM workflow_executions WHERE assigned_to = :v"),
                            {"v": f"{SECRET}-{i}"}).all()
    optimizer = PerformanceOptimizer(execution, thresholds=Thresholds(slow_query_ms=0.0, slow_operation_ms=0.0))

    recs = optimizer.recommendations()
    result = optimizer.auto_optimize(lambda: None)

    shown = json.dumps([r.to_dict() for r in recs], default=str) + result.to_json()
    assert {"n_plus_one", "slow_query", "large_context"} <= {r.kind for r in recs}
    assert SECRET not in shown
