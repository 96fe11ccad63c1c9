"""Employee onboarding: hired -> equipment_ordered -> accounts_created -> orientation -> onboarded.

    >>> with Session(engine) as session:
    ...     [employee] = seed_employees(session, 1, role="support")   # seeds staff too if none
    ...     session.commit()
    ...     execution = start_workflow(session, EmployeeOnboarding, workflowable=employee)
    ...     for action in ("order_equipment", "create_accounts", "start_orientation", "complete_orientation"):
    ...         execution.perform_action(action, user="hr")
    ...     len(employee.tasks), all(task.done for task in employee.tasks)
    (8, True)

``order_equipment`` plans the onboarding: it creates one :class:`OnboardingTask` per checklist
item (8, or 10 for engineers), each assigned to a :class:`Staff` member of a different
department, so every task of an employee has its own assignee.

``complete_orientation`` is DELIBERATELY N+1-prone, written the way real code is: it walks
``employee.tasks`` and reads ``task.assignee`` (a plain lazy many-to-one) in the loop, one
SELECT on ``example_staff`` per task. It is the pattern flowscope's optimizer must find; the
fix is ``selectinload(OnboardingTask.assignee)``. :mod:`.order_fulfillment` is the clean twin.
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, object_session, relationship

from flowscope.workflows import Workflow, WorkflowExecution, on, step

from ._base import ExampleBase, utcnow

__all__ = ["CHECKLIST", "ENGINEERING_CHECKLIST", "Employee", "EmployeeOnboarding", "OnboardingTask", "Staff",
           "seed_employees", "seed_staff"]

# (department, task title): one task per department, so each task gets a different assignee.
CHECKLIST: tuple[tuple[str, str], ...] = (
    ("IT", "Create accounts"),
    ("Facilities", "Prepare desk and equipment"),
    ("Security", "Issue badge and 2FA token"),
    ("HR", "Sign employment contract"),
    ("Payroll", "Register for payroll"),
    ("Legal", "Sign NDA and policies"),
    ("Training", "Run orientation session"),
    ("Team", "Introduce the team"),
)
ENGINEERING_CHECKLIST: tuple[tuple[str, str], ...] = (
    ("Platform", "Grant repository and CI access"),
    ("SRE", "Add to the on-call shadow rotation"),
)


class Staff(ExampleBase):
    """A member of staff who can be assigned onboarding tasks."""

    __tablename__ = "example_staff"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(200))
    department: Mapped[str] = mapped_column(String(50), index=True)

    def __repr__(self) -> str:
        return f"<Staff {self.name} ({self.department})>"


class Employee(ExampleBase):
    """A new hire; ``status`` mirrors the workflow step."""

    __tablename__ = "example_employees"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(20), default="hired")
    equipment: Mapped[str | None] = mapped_column(String(200))
    work_email: Mapped[str | None] = mapped_column(String(200))
    onboarded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    tasks: Mapped[list[OnboardingTask]] = relationship(back_populates="employee", order_by="OnboardingTask.id",
                                                       cascade="all, delete-orphan")

    def __repr__(self) -> str:
        return f"<Employee id={self.id} {self.name!r} status={self.status!r}>"


class OnboardingTask(ExampleBase):
    """One checklist item of an employee's onboarding, assigned to a member of staff."""

    __tablename__ = "example_onboarding_tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    employee_id: Mapped[int] = mapped_column(ForeignKey("example_employees.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    department: Mapped[str] = mapped_column(String(50))
    done: Mapped[bool] = mapped_column(default=False)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    assignee_id: Mapped[int] = mapped_column(ForeignKey("example_staff.id"), index=True)

    employee: Mapped[Employee] = relationship(back_populates="tasks")
    assignee: Mapped[Staff] = relationship()     # plain lazy many-to-one, the ORM default

    def __repr__(self) -> str:
        return f"<OnboardingTask {self.title!r} done={self.done}>"


class EmployeeOnboarding(Workflow):
    """hired -> equipment_ordered -> accounts_created -> orientation -> onboarded."""

    hired = step(order_equipment="equipment_ordered")
    equipment_ordered = step(create_accounts="accounts_created")
    accounts_created = step(start_orientation="orientation")
    orientation = step(complete_orientation="onboarded")
    onboarded = step()

    @on("order_equipment")
    def plan_onboarding(self, execution: WorkflowExecution, user: str | None, context: dict[str, Any]) -> None:
        employee: Employee = execution.workflowable
        session = _session(execution)
        by_department: dict[str, list[Staff]] = {}
        for member in session.scalars(select(Staff).order_by(Staff.id)):     # one query for all staff
            by_department.setdefault(member.department, []).append(member)
        checklist = CHECKLIST + (ENGINEERING_CHECKLIST if employee.role == "engineer" else ())
        for department, title in checklist:
            staff = by_department.get(department)
            if not staff:
                raise LookupError(f"no staff in department {department!r} to assign {title!r} to; "
                                  "add some (seed_staff) before onboarding")
            assignee = staff[employee.id % len(staff)]
            session.add(OnboardingTask(employee_id=employee.id, title=title, department=department,
                                       assignee_id=assignee.id))
        employee.equipment = str(context.get("equipment") or _EQUIPMENT.get(employee.role, "laptop"))
        employee.status = "equipment_ordered"
        execution.context_data["tasks_created"] = len(checklist)
        execution.context_data["equipment"] = employee.equipment

    @on("create_accounts")
    def create_accounts(self, execution: WorkflowExecution, user: str | None, context: dict[str, Any]) -> None:
        employee: Employee = execution.workflowable
        session = _session(execution)
        employee.work_email = f"{employee.name.lower().replace(' ', '.')}@example.com"
        employee.status = "accounts_created"
        session.execute(update(OnboardingTask)
                        .where(OnboardingTask.employee_id == employee.id, OnboardingTask.department == "IT")
                        .values(done=True, completed_at=utcnow()))
        execution.context_data["work_email"] = employee.work_email

    @on("start_orientation")
    def start_orientation(self, execution: WorkflowExecution, user: str | None, context: dict[str, Any]) -> None:
        employee: Employee = execution.workflowable
        employee.status = "orientation"
        execution.context_data["orientation_led_by"] = user

    @on("complete_orientation")
    def sign_off(self, execution: WorkflowExecution, user: str | None, context: dict[str, Any]) -> None:
        employee: Employee = execution.workflowable
        now = utcnow()
        # DELIBERATE N+1 (do not "fix" here: flowscope's optimizer must find it). The tasks
        # are one lazy load, but each ``task.assignee`` is another lazy load, one SELECT on
        # example_staff per task: every task has a different assignee, and after the previous
        # action's commit nothing is left loaded in the session. The fix is one query:
        #     select(OnboardingTask).where(...).options(selectinload(OnboardingTask.assignee))
        signed_off_by = [task.assignee.name for task in employee.tasks]
        for task in employee.tasks:
            if not task.done:
                task.done = True
                task.completed_at = now
        employee.status = "onboarded"
        employee.onboarded_at = now
        execution.context_data["signed_off_by"] = signed_off_by


_EQUIPMENT = {"engineer": "laptop (32 GB), two monitors", "designer": "laptop, drawing tablet, monitor",
              "sales": "laptop, headset"}
_FIRST = ("Ada", "Alan", "Barbara", "Edsger", "Grace", "Ken", "Margaret", "Tim", "Radia", "Linus",
          "Frances", "John", "Donald", "Hedy", "Dennis", "Katherine")
_LAST = ("Lovelace", "Turing", "Liskov", "Dijkstra", "Hopper", "Thompson", "Hamilton", "Berners-Lee",
         "Perlman", "Torvalds", "Allen", "Backus", "Knuth", "Lamarr", "Ritchie", "Johnson")
_ROLES = ("engineer", "designer", "sales", "support")


def seed_staff(session: Session, per_department: int = 3) -> list[Staff]:
    """Add ``per_department`` staff to every checklist department; flushed, not committed."""
    staff = []
    for department, _ in CHECKLIST + ENGINEERING_CHECKLIST:
        for n in range(1, per_department + 1):
            name = f"{department} lead {n}" if n == 1 else f"{department} associate {n - 1}"
            staff.append(Staff(name=name, department=department,
                               email=f"{department.lower()}.{n}@example.com"))
    session.add_all(staff)
    session.flush()
    return staff


def seed_employees(session: Session, count: int, rng: random.Random | None = None,
                   role: str | None = None) -> list[Employee]:
    """Add ``count`` new hires (every ``role`` if given, else mixed); seeds staff if there is none.

    Flushed, not committed.
    """
    rng = rng or random.Random(0)
    if session.scalar(select(Staff.id).limit(1)) is None:
        seed_staff(session)
    employees = [Employee(name=f"{rng.choice(_FIRST)} {rng.choice(_LAST)}", role=role or rng.choice(_ROLES))
                 for _ in range(count)]
    session.add_all(employees)
    session.flush()
    return employees


def _session(execution: WorkflowExecution) -> Session:
    session = object_session(execution)
    assert session is not None, "the engine only runs handlers for executions attached to a session"
    return session
