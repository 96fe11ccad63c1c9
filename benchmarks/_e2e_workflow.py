"""The workflow and the record bench_end_to_end.py drives (a module of its own so the stored
import paths, ``_e2e_workflow:EditorialCycle``, resolve the same way in every process).

A cycle with no final step, so an execution can take actions forever:

    drafting --submit--> reviewing --approve--> publishing --publish--> drafting
                         reviewing --reject---> drafting

Handlers do what real ones do: read and change ``context_data`` and the workflowable record.
"""

from __future__ import annotations

from sqlalchemy import Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from flowscope.workflows import Workflow, WorkflowExecution, on, step


class BenchBase(DeclarativeBase):
    pass


class Article(BenchBase):
    __tablename__ = "bench_articles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="draft")
    revision: Mapped[int] = mapped_column(Integer, default=1)


class EditorialCycle(Workflow):
    drafting = step(submit="reviewing")
    reviewing = step(approve="publishing", reject="drafting")
    publishing = step(publish="drafting")

    @on("submit")
    def count_submission(self, execution: WorkflowExecution, user: str | None, context: dict) -> None:
        execution.context_data["submissions"] = execution.context_data.get("submissions", 0) + 1

    @on("approve")
    def stamp(self, execution: WorkflowExecution, user: str | None, context: dict) -> None:
        execution.context_data["approved_by"] = user

    @on("publish")
    def publish_article(self, execution: WorkflowExecution, user: str | None, context: dict) -> None:
        article = execution.workflowable
        article.status = "published"
        article.revision += 1


# The action a bench user takes at each step: every fourth submission is rejected.
NEXT_ACTION = {"drafting": "submit", "publishing": "publish"}


def next_action(execution: WorkflowExecution) -> str:
    step_name = execution.current_step
    if step_name == "reviewing":
        return "reject" if execution.context_data.get("submissions", 0) % 4 == 0 else "approve"
    return NEXT_ACTION[step_name]
