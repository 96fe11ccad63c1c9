"""``QueryOptimizer.enable_caching``: real caches in the engine that cut measured work (queries,
calls), invalidated by transitions, never trusted by ``perform_action``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from flowscope.examples import Document, DocumentApproval, seed_documents
from flowscope.performance.optimizations import QueryOptimizer, UnknownCacheError, measure
from flowscope.telemetry import Telemetry
from flowscope.workflows import InvalidActionError, WorkflowExecution, _runtime, start_workflow
from support.optimizer_scenarios import no_optimizations_left

REQUESTS = 5


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    with no_optimizations_left():
        yield


def document_in_review(session: Session) -> tuple[int, int]:
    """A DocumentApproval execution waiting for review: its three guards load the document."""
    [document] = seed_documents(session, 1)
    session.commit()
    document_id = document.id
    execution = start_workflow(session, DocumentApproval, workflowable=document)
    execution.perform_action("submit_for_review", user=document.author)
    return execution.id, document_id


def list_actions_per_request(engine: Engine, execution_id: int, user: str) -> list[list[str]]:
    """What a UI does: one new session per request, the execution's actions for the user."""
    seen = []
    for _ in range(REQUESTS):
        with Session(engine) as session:
            seen.append(session.get(WorkflowExecution, execution_id).available_actions(user))
    return seen


def test_caching_available_actions_saves_the_guards_queries_of_repeated_requests(
        engine: Engine, session: Session, telemetry: Telemetry) -> None:
    execution_id, _ = document_in_review(session)
    uncached, before = measure(lambda: list_actions_per_request(engine, execution_id, "rita"), "requests")

    optimizer = QueryOptimizer()
    optimizer.enable_caching(["available_actions"])
    cached, after = measure(lambda: list_actions_per_request(engine, execution_id, "rita"), "requests")

    assert uncached == cached == [["approve", "reject", "request_changes"]] * REQUESTS
    # Per request: the execution, then the document once per guard (three guards; nothing keeps
    # the loaded document alive between them, so the weak identity map forgets it each time).
    assert before.queries == (1 + 3) * REQUESTS
    assert after.queries == REQUESTS + 3               # the guards ran for the first request only
    stats = optimizer.cache_stats()["available_actions"]
    assert (stats.hits, stats.misses) == (REQUESTS - 1, 1)


def test_a_transition_invalidates_the_cached_actions(session: Session, telemetry: Telemetry) -> None:
    execution_id, _ = document_in_review(session)
    execution = session.get(WorkflowExecution, execution_id)
    optimizer = QueryOptimizer()
    optimizer.enable_caching(["available_actions"])
    assert execution.available_actions("rita") == ["approve", "reject", "request_changes"]

    execution.perform_action("request_changes", user="rita")

    assert execution.available_actions("rita") == ["submit_for_review", "save_draft"]
    assert optimizer.cache_stats()["available_actions"].misses == 2


def test_perform_action_runs_the_guards_even_when_a_cached_answer_allows_the_action(
        session: Session, telemetry: Telemetry) -> None:
    execution_id, document_id = document_in_review(session)
    execution = session.get(WorkflowExecution, execution_id)
    QueryOptimizer().enable_caching(["available_actions"])
    assert "approve" in execution.available_actions("rita")
    session.get(Document, document_id).author = "rita"       # rita may no longer review it
    session.commit()                                          # (no transition: the version is unchanged)

    with pytest.raises(InvalidActionError):
        execution.perform_action("approve", user="rita")


def test_caching_workflow_definitions_resolves_each_class_path_once(session: Session, telemetry: Telemetry) -> None:
    execution_id, _ = document_in_review(session)
    execution = session.get(WorkflowExecution, execution_id)
    optimizer = QueryOptimizer()
    optimizer.enable_caching(["workflow_definition", "step_definitions"])

    for _ in range(10):
        assert execution.workflow_definition is DocumentApproval
        execution.available_actions("rita")

    stats = optimizer.cache_stats()
    # 10 property reads + 10 reads inside available_actions: one import, 19 resolutions saved
    assert (stats["workflow_definition"].misses, stats["workflow_definition"].hits) == (1, 19)
    assert (stats["step_definitions"].misses, stats["step_definitions"].hits) == (1, 9)


def test_disable_caching_takes_the_caches_out_of_the_engine() -> None:
    optimizer = QueryOptimizer()
    optimizer.enable_caching()

    optimizer.disable_caching()

    assert (_runtime.workflow_class_cache, _runtime.step_actions_cache, _runtime.available_actions_cache) == (
        None, None, None)
    assert optimizer.cache_stats() == {}


def test_an_unknown_cache_name_is_refused() -> None:
    with pytest.raises(UnknownCacheError, match="unknown cache 'everything'"):
        QueryOptimizer().enable_caching(["available_actions", "everything"])
    assert _runtime.available_actions_cache is None
