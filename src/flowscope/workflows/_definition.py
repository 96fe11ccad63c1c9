"""Workflow definitions: steps, actions, handlers and guards, validated at class creation.

A definition is a plain class; steps are class attributes made with :func:`step`, in the
order they are declared (the first is the initial step, steps without actions are final):

    >>> class DocumentApproval(Workflow):
    ...     draft = step(submit_for_review="pending_review")
    ...     pending_review = step(approve="approved", reject="draft")
    ...     approved = step()
    ...
    ...     @on("approve")
    ...     def stamp(self, execution, user, context):
    ...         execution.context_data["approved_by"] = user
    ...
    ...     @guard("approve")
    ...     def reviewer_only(self, execution, user):
    ...         return user != execution.assigned_to

Design decision: validation happens in ``__init_subclass__`` so a broken definition fails at
import time, where the mistake is, instead of at the first execution in production.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from .errors import WorkflowDefinitionError

Handler = Callable[..., Any]
Guard = Callable[..., bool]


@dataclass(frozen=True)
class StepDefinition:
    """One step of a workflow: its name and its actions (action name -> target step)."""

    name: str
    actions: Mapping[str, str] = field(default_factory=dict)
    description: str = ""

    @property
    def is_final(self) -> bool:
        return not self.actions


def step(description: str = "", /, **actions: str) -> StepDefinition:
    """Declare a step; keyword arguments map each action to the step it leads to."""
    for action, target in actions.items():
        if not isinstance(target, str):
            raise TypeError(f"step(): action {action!r} must name its target step as a string, got {target!r}")
    return StepDefinition(name="", actions=MappingProxyType(dict(actions)), description=description)


def on(action: str) -> Callable[[Handler], Handler]:
    """Mark a method as the handler of ``action``: ``handler(self, execution, user, context)``."""

    def mark(fn: Handler) -> Handler:
        fn.__workflow_handler_for__ = action  # type: ignore[attr-defined]
        return fn

    return mark


def guard(action: str) -> Callable[[Guard], Guard]:
    """Mark a method as a guard of ``action``: ``guard(self, execution, user) -> bool``."""

    def mark(fn: Guard) -> Guard:
        fn.__workflow_guard_for__ = action  # type: ignore[attr-defined]
        return fn

    return mark


class Workflow:
    """Base class of workflow definitions (see the module docstring)."""

    steps: ClassVar[Mapping[str, StepDefinition]] = MappingProxyType({})
    initial_step: ClassVar[str]
    handlers: ClassVar[Mapping[str, tuple[str, ...]]] = MappingProxyType({})
    guards: ClassVar[Mapping[str, tuple[str, ...]]] = MappingProxyType({})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        steps: dict[str, StepDefinition] = {}
        handlers: dict[str, list[str]] = {}
        guards: dict[str, list[str]] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                if isinstance(value, StepDefinition):
                    # An override keeps the position of the step it replaces (dict assignment),
                    # so overriding the initial step in a subclass keeps it initial.
                    steps[attr] = StepDefinition(attr, value.actions, value.description)
                elif callable(value) and hasattr(value, "__workflow_handler_for__"):
                    handlers.setdefault(value.__workflow_handler_for__, []).append(attr)
                elif callable(value) and hasattr(value, "__workflow_guard_for__"):
                    guards.setdefault(value.__workflow_guard_for__, []).append(attr)
        _validate_names(cls, steps)   # before setattr: a step named __dict__ must not get that far
        for step_name, named_step in steps.items():
            setattr(cls, step_name, named_step)
        cls.steps = MappingProxyType(steps)
        cls.handlers = MappingProxyType({a: tuple(dict.fromkeys(n)) for a, n in handlers.items()})
        cls.guards = MappingProxyType({a: tuple(dict.fromkeys(n)) for a, n in guards.items()})
        _validate(cls)
        cls.initial_step = next(iter(steps))

    @classmethod
    def import_path(cls) -> str:
        """``module:QualName``, the form stored in ``WorkflowExecution.workflow_class``."""
        return f"{cls.__module__}:{cls.__qualname__}"

    @classmethod
    def actions_at(cls, step_name: str) -> list[str]:
        """Every action declared at ``step_name`` (guards not applied)."""
        return list(cls.steps[step_name].actions) if step_name in cls.steps else []

    @classmethod
    def all_actions(cls) -> set[str]:
        return {action for s in cls.steps.values() for action in s.actions}

    @classmethod
    def final_steps(cls) -> list[str]:
        return [name for name, s in cls.steps.items() if s.is_final]


# The columns that store them (workflow_executions.current_step, workflow_transitions.action/
# from_step/to_step are String(100); workflow_class is String(255)): what every supported
# database can store, checked when the class statement runs rather than at the first write.
MAX_STEP_OR_ACTION_LENGTH = 100
MAX_IMPORT_PATH_LENGTH = 255


def _validate_names(cls: type, steps: Mapping[str, StepDefinition]) -> None:
    name = cls.__qualname__
    path = f"{cls.__module__}:{cls.__qualname__}"
    if len(path) > MAX_IMPORT_PATH_LENGTH:
        raise WorkflowDefinitionError(name, f"its import path {path[:60]!r}... is {len(path)} characters; "
                                            f"at most {MAX_IMPORT_PATH_LENGTH} can be stored")
    reserved = _reserved_names()
    for step_name, definition in steps.items():
        if step_name.startswith("__") and step_name.endswith("__") or step_name in reserved:
            raise WorkflowDefinitionError(name, f"step {step_name!r} clashes with a Python or Workflow "
                                                f"attribute of the same name; rename the step", step=step_name)
        for kind, value in [("step", step_name)] + [("action", a) for a in definition.actions]:
            if (not value or "\x00" in value or len(value) > MAX_STEP_OR_ACTION_LENGTH
                    or value.encode("utf-8", "replace").decode("utf-8") != value):
                raise WorkflowDefinitionError(
                    name, f"{kind} name {value[:40]!r} cannot be stored: use 1 to {MAX_STEP_OR_ACTION_LENGTH} "
                          f"characters of valid Unicode, no NUL (got {len(value)})", step=step_name)


def _reserved_names() -> frozenset[str]:
    """The attributes every workflow class has (``steps``, ``import_path``, ...): a step of that
    name would replace them."""
    return frozenset(n for n in vars(Workflow) if not n.startswith("__"))


def _validate(cls: type[Workflow]) -> None:
    name = cls.__qualname__
    steps = cls.steps
    if not steps:
        raise WorkflowDefinitionError(name, "defines no steps; declare at least one with step()")
    for s in steps.values():
        for action, target in s.actions.items():
            if target not in steps:
                raise WorkflowDefinitionError(
                    name, f"step {s.name!r}: action {action!r} targets undefined step {target!r} "
                    f"(defined steps: {', '.join(steps)})", step=s.name, target=target)
    declared = cls.all_actions()
    for kind, table in (("handler", cls.handlers), ("guard", cls.guards)):
        for action, methods in table.items():
            if action not in declared:
                raise WorkflowDefinitionError(
                    name, f"{kind} {methods[0]!r} is for action {action!r}, which no step declares")
    initial = next(iter(steps))
    reachable = {initial}
    frontier = [initial]
    while frontier:
        for target in steps[frontier.pop()].actions.values():
            if target not in reachable:
                reachable.add(target)
                frontier.append(target)
    for s in steps:
        if s not in reachable:
            raise WorkflowDefinitionError(
                name, f"step {s!r} is unreachable from the initial step {initial!r}", step=s)
