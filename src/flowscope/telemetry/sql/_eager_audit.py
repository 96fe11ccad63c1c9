"""Unused eager loads: relationships an operation loaded eagerly and never read (an opt-in audit).

    >>> install_eager_load_audit()    # done by the pytest plugin, `flowscope check`,
    ...                               # and FLOWSCOPE_AUDIT_EAGER_LOADS=true
    >>> with flowscope.operation("list posts"):
    ...     posts = session.scalars(select(Post).options(selectinload(Post.comments))).all()
    ...     titles = [p.title for p in posts]          # Post.comments never read
    >>> # -> an ``unused_eager_load`` finding: drop selectinload(Post.comments)

Design decision: three hooks, all public SQLAlchemy API or a documented extension point.
- The mapper ``load`` event (instances created from rows inside an operation) lists the
  instances the operation loaded, with the application line of the query that loaded them.
- A ``do_orm_execute`` listener counts the extra SELECTs of selectin/subquery eager loads.
- Reads are seen by giving each relationship attribute of a loaded class a subclass of
  ``InstrumentedAttribute`` whose ``__get__`` notes the read in the current operation: a loaded
  attribute is a plain ``__dict__`` hit with no event, so nothing else can see it.
When an operation ends, each relationship already in a loaded instance's ``__dict__`` that no
code read was populated by an eager loader (lazy loads and assignments go through the
attribute); when the outermost operation ends, a relationship whose loads no code read in
the whole trace (a caller reading what a nested operation loaded counts) is unused.
It is an audit, not a production probe: each relationship read costs one Python call more
(~0.3 us), each loaded instance an event, and the instances an operation loads stay alive until
it ends (up to ``MAX_INSTANCES_PER_OPERATION``; the ORM holds them only weakly, and what the
eager loader put in them is read when the operation ends). Instances already in the session's identity map are
not created again, so eager loads onto them are not seen; neither are instances expired (a
commit) before their operation ends.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Mapper, Session
from sqlalchemy.orm.attributes import InstrumentedAttribute

from .._context import FRAME_KEY, current_context
from .._frames import application_call_site
from .._health import health

MAX_INSTANCES_PER_OPERATION = 10_000

_lock = threading.Lock()
_installed = False
_names: dict[Any, str] = {}              # attribute impl -> "Class.attribute" (the relationship's)
_audited_classes: dict[type, list[InstrumentedAttribute]] = {}


@dataclass(frozen=True)
class EagerLoadVerdict:
    """One relationship eagerly loaded inside one trace's outermost operation."""

    operation: str           # the (innermost) operation that loaded it
    relationship: str        # "Class.attribute"
    parents: int             # instances it was loaded for
    objects: int             # related objects it loaded
    queries: int             # extra SELECTs it ran (selectin/subquery; 0 for a JOIN)
    call_site: str | None    # the application line of the query that loaded the parents
    used: bool               # read by any code of the trace


class EagerAudit:
    """One operation's share of the audit (kept on its frame, created at its first event)."""

    __slots__ = ("instances", "call_sites", "reads", "queries", "loads", "verdicts")

    def __init__(self) -> None:
        self.instances: list[Any] = []          # instances loaded while this was the innermost operation
        self.call_sites: dict[type, str | None] = {}
        self.reads: set[Any] = set()            # attribute impls read
        self.queries: dict[str, int] = {}       # relationship -> eager-load SELECTs not yet in a load
        # one per (ended operation, relationship): [operation, relationship, parents, objects, call_site, queries]
        self.loads: list[list[Any]] = []
        self.verdicts: tuple[EagerLoadVerdict, ...] = ()   # on the outermost operation, once ended

    def close(self, frame: Any) -> None:
        """The operation of ``frame`` ended: tally what its instances hold, then hand it all to
        the enclosing operation, or judge it when there is none."""
        self._tally(frame.name)
        parent = frame.parent
        if parent is None:
            self._judge()
            return
        theirs = parent.eager_audit
        if theirs is None:
            theirs = parent.eager_audit = EagerAudit()
        theirs.reads |= self.reads
        for relationship, n in self.queries.items():   # eager SELECTs for instances loaded out there
            theirs.queries[relationship] = theirs.queries.get(relationship, 0) + n
        theirs.loads.extend(self.loads)

    def _tally(self, operation: str) -> None:
        mine: dict[str, list[Any]] = {}
        impls: dict[type, list[Any]] = {}   # per class, once per tally
        for instance in self.instances:
            populated = instance.__dict__
            cls = type(instance)
            if cls not in impls:
                impls[cls] = [attribute.impl for attribute in _audited_classes.get(cls, ())]
            for impl in impls[cls]:
                if impl.key not in populated:
                    continue
                value = populated[impl.key]
                relationship = _names[impl]
                load = mine.get(relationship)
                if load is None:
                    load = mine[relationship] = [operation, relationship, 0, 0, self.call_sites.get(cls),
                                                 self.queries.pop(relationship, 0)]
                load[2] += 1
                load[3] += (len(value) if impl.collection else 1) if value is not None else 0
        self.loads.extend(mine.values())
        self.instances = []

    def _judge(self) -> None:
        read = {_names[impl] for impl in self.reads if impl in _names}
        self.verdicts = tuple(
            EagerLoadVerdict(operation=operation, relationship=relationship, parents=parents, objects=objects,
                             queries=queries, call_site=call_site, used=relationship in read)
            for operation, relationship, parents, objects, call_site, queries in self.loads)


def _audit_of(frame: Any) -> EagerAudit:
    audit = frame.eager_audit
    if audit is None:
        audit = frame.eager_audit = EagerAudit()
    return audit


class _AuditedAttribute(InstrumentedAttribute):
    """A relationship attribute that notes each read in the current operation."""

    __slots__ = ()

    def __get__(self, instance: Any, owner: Any) -> Any:
        if instance is not None:
            frame = current_context().get(FRAME_KEY)
            if frame is not None:
                try:
                    _audit_of(frame).reads.add(self.impl)
                except Exception:
                    health.failed("noting a relationship read")
        return InstrumentedAttribute.__get__(self, instance, owner)


def _audit_class(cls: type) -> None:
    """Give the relationship attributes of ``cls`` the audited class (once per class)."""
    with _lock:
        if cls in _audited_classes or not _installed:
            return
        manager = inspect(cls).class_manager
        audited = []
        for prop in inspect(cls).relationships:
            attribute = manager.get(prop.key)
            if type(attribute) is InstrumentedAttribute:   # a subclass may share its base's attribute
                attribute.__class__ = _AuditedAttribute
            if type(attribute) is _AuditedAttribute:
                _names[attribute.impl] = f"{prop.parent.class_.__name__}.{prop.key}"
                audited.append(attribute)
        _audited_classes[cls] = audited


def _on_load(target: Any, context: Any) -> None:
    frame = current_context().get(FRAME_KEY)
    if frame is None:
        return
    try:
        audit = _audit_of(frame)
        if len(audit.instances) >= MAX_INSTANCES_PER_OPERATION:
            return
        cls = type(target)
        if cls not in _audited_classes:
            _audit_class(cls)
        if cls not in audit.call_sites:
            audit.call_sites[cls] = application_call_site()
        audit.instances.append(target)
    except Exception:
        health.failed("auditing a loaded instance")


def _on_orm_execute(state: Any) -> None:
    frame = current_context().get(FRAME_KEY)
    if frame is None:
        return
    try:
        if state.is_select and state.is_relationship_load and state.lazy_loaded_from is None:
            prop = getattr(state.loader_strategy_path, "prop", None)
            if prop is not None:
                queries = _audit_of(frame).queries
                name = f"{prop.parent.class_.__name__}.{prop.key}"
                queries[name] = queries.get(name, 0) + 1
    except Exception:
        health.failed("counting an eager load")


def install_eager_load_audit() -> None:
    """Find unused eager loads in every operation from now on (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        event.listen(Mapper, "load", _on_load)
        event.listen(Session, "do_orm_execute", _on_orm_execute)
        _installed = True


def uninstall_eager_load_audit() -> None:
    """Stop the audit and give every relationship attribute its own class back."""
    global _installed
    with _lock:
        if not _installed:
            return
        event.remove(Mapper, "load", _on_load)
        event.remove(Session, "do_orm_execute", _on_orm_execute)
        for attributes in _audited_classes.values():
            for attribute in attributes:
                attribute.__class__ = InstrumentedAttribute
        _audited_classes.clear()
        _names.clear()
        _installed = False


def eager_load_audit_installed() -> bool:
    return _installed
