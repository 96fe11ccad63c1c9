"""Document approval: an author drafts, a reviewer (never the author) approves or rejects.

    >>> with Session(engine) as session:
    ...     [document] = seed_documents(session, 1)
    ...     session.commit()
    ...     execution = start_workflow(session, DocumentApproval, workflowable=document)
    ...     execution.perform_action("submit_for_review", user=document.author)
    ...     execution.perform_action("approve", user="rita")   # any reviewer but the author
    ...     document.status, document.reviewed_by, execution.context_data["word_count"] > 0
    ('approved', 'rita', True)

Handlers keep the document in step with the execution (``Document.status`` mirrors the step)
and leave a short summary in ``execution.context_data``. Submitting an empty document raises
:class:`EmptyDocumentError`, which the engine rolls back like any handler failure.
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, String, Text
from sqlalchemy.orm import Mapped, Session, mapped_column

from flowscope.workflows import Workflow, WorkflowExecution, guard, on, step

from ._base import ExampleBase, utcnow

__all__ = ["Document", "DocumentApproval", "EmptyDocumentError", "seed_documents"]


class Document(ExampleBase):
    """A document going through review."""

    __tablename__ = "example_documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="draft")
    word_count: Mapped[int] = mapped_column(default=0)
    revision: Mapped[int] = mapped_column(default=1)
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reviewed_by: Mapped[str | None] = mapped_column(String(100))
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    review_comment: Mapped[str | None] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"<Document id={self.id} {self.title!r} status={self.status!r} rev={self.revision}>"


class EmptyDocumentError(ValueError):
    """A document with no words was submitted for review."""

    def __init__(self, document: Document):
        self.document_id = document.id
        super().__init__(f"document {document.id} ({document.title!r}) has no text; "
                         "write something (save_draft with a 'body') before submitting it")


class DocumentApproval(Workflow):
    """draft -> pending_review -> approved | rejected (-> draft again on resubmit)."""

    draft = step(submit_for_review="pending_review", save_draft="draft")
    pending_review = step(approve="approved", reject="rejected", request_changes="draft")
    approved = step()
    rejected = step(resubmit="draft")

    # Guards: a reviewer must be named and must not be the author. One method per action,
    # because @guard marks the function object itself.
    @guard("approve")
    def reviewer_may_approve(self, execution: WorkflowExecution, user: str | None) -> bool:
        return _is_independent_reviewer(execution, user)

    @guard("reject")
    def reviewer_may_reject(self, execution: WorkflowExecution, user: str | None) -> bool:
        return _is_independent_reviewer(execution, user)

    @guard("request_changes")
    def reviewer_may_request_changes(self, execution: WorkflowExecution, user: str | None) -> bool:
        return _is_independent_reviewer(execution, user)

    @on("save_draft")
    def save(self, execution: WorkflowExecution, user: str | None, context: dict[str, Any]) -> None:
        document: Document = execution.workflowable
        if "body" in context:
            document.body = str(context["body"])
            document.revision += 1
        document.status = "draft"
        execution.context_data["revision"] = document.revision

    @on("submit_for_review")
    def submit(self, execution: WorkflowExecution, user: str | None, context: dict[str, Any]) -> None:
        document: Document = execution.workflowable
        words = len(document.body.split())
        if words == 0:
            raise EmptyDocumentError(document)
        document.word_count = words
        document.status = "pending_review"
        document.submitted_at = utcnow()
        execution.context_data["word_count"] = words
        execution.context_data["submissions"] = execution.context_data.get("submissions", 0) + 1

    @on("approve")
    def approve(self, execution: WorkflowExecution, user: str | None, context: dict[str, Any]) -> None:
        _record_review(execution, user, "approved", context.get("comment"))
        execution.context_data["approved_by"] = user

    @on("reject")
    def reject(self, execution: WorkflowExecution, user: str | None, context: dict[str, Any]) -> None:
        _record_review(execution, user, "rejected", context.get("reason"))
        execution.context_data["rejected_by"] = user

    @on("request_changes")
    def request_changes(self, execution: WorkflowExecution, user: str | None, context: dict[str, Any]) -> None:
        _record_review(execution, user, "draft", context.get("comment"))
        execution.context_data["change_requests"] = execution.context_data.get("change_requests", 0) + 1

    @on("resubmit")
    def reopen(self, execution: WorkflowExecution, user: str | None, context: dict[str, Any]) -> None:
        document: Document = execution.workflowable
        document.status = "draft"
        document.revision += 1
        execution.context_data["revision"] = document.revision


def _is_independent_reviewer(execution: WorkflowExecution, user: str | None) -> bool:
    document: Document | None = execution.workflowable
    return user is not None and document is not None and user != document.author


def _record_review(execution: WorkflowExecution, user: str | None, status: str, comment: Any) -> None:
    document: Document = execution.workflowable
    document.status = status
    document.reviewed_by = user
    document.reviewed_at = utcnow()
    document.review_comment = None if comment is None else str(comment)


_AUTHORS = ("ada", "alan", "barbara", "edsger", "grace", "ken", "margaret", "tim")
_WORDS = ("workflow", "latency", "throughput", "review", "budget", "quarter", "release", "customer",
          "database", "index", "migration", "policy", "security", "roadmap", "incident", "team")


def seed_documents(session: Session, count: int, rng: random.Random | None = None) -> list[Document]:
    """Add ``count`` draft documents with generated text; flushed (ids set), not committed."""
    rng = rng or random.Random(0)
    documents = []
    for i in range(count):
        body = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(40, 400)))
        documents.append(Document(title=f"{rng.choice(_WORDS).title()} report #{i + 1}", body=body,
                                  author=rng.choice(_AUTHORS)))
    session.add_all(documents)
    session.flush()
    return documents
