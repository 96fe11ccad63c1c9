"""Eager loading applied from outside the code: loader options added to ORM queries as they run.

    >>> owner = object()
    >>> enable(["OnboardingTask.assignee", "transitions", "workflowable"], owner)
    ('OnboardingTask.assignee', 'WorkflowExecution.transitions', 'workflowable')
    >>> # every ORM query that loads OnboardingTask rows now also runs
    >>> # selectinload(OnboardingTask.assignee): one query for all assignees, not one per task
    >>> disable(owner)

Names: ``"Class.attribute"`` (any mapped class, found through SQLAlchemy's mapper registries;
``"module.Class.attribute"`` when two classes share a name), a chain
``"Employee.tasks.assignee"``, a plain ``WorkflowExecution`` relationship (``"transitions"``),
or ``"workflowable"`` (the polymorphic record an execution is about).

Design decisions:
- One ``do_orm_execute`` listener on the ``Session`` class (every session, present and
  future), installed while something is enabled and removed when nothing is: the documented
  place to add options to ORM statements, and free when off.
- An option is added only where SQLAlchemy would accept it: SELECTs (not refreshes of expired
  attributes) whose *full* entities include the relationship's class (or a subclass). A
  relationship lazy load (``employee.tasks``) gets the option prefixed with the path it was
  loaded through (``defaultload(Employee.tasks).selectinload(OnboardingTask.assignee)``),
  because SQLAlchemy matches options of a lazy load relative to that path; without the prefix
  the option is silently ignored (measured: still one query per task).
- ``selectinload`` for collections and many-to-one alike: one extra query per relationship
  level, whatever the number of rows, and no row multiplication as with joins.
- ``workflowable`` is not a relationship (it is a ``module:Class`` + id reference), so it
  cannot be a loader option. When a query returns two or more executions, the listener runs
  it, then loads their workflowables with one ``WHERE id IN (...)`` query per type into the
  session's identity map (where ``execution.workflowable`` looks first), and keeps a
  reference on each execution so the identity map cannot drop them. A single execution is
  left alone: preloading one record is no cheaper than loading it when it is used, and costs
  a query when it is not.
- Enabling is reference-counted per owner (a ``QueryOptimizer``), so one optimizer's
  ``disable_eager_loading()`` does not undo another's.
- A failure while adding options is counted in ``flowscope.telemetry.health`` and the query
  runs unchanged: an optimization never breaks the query it optimizes.
"""

from __future__ import annotations

import importlib
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import DeclarativeBase, Mapper, RelationshipProperty, Session, defaultload, selectinload
from sqlalchemy.orm.util import identity_key

from ...telemetry import health
from ...workflows import WorkflowExecution
from ...workflows._runtime import resolve_import_path

WORKFLOWABLE = "workflowable"
_PRELOAD_CHUNK = 500


class UnknownRelationshipError(ValueError):
    """An eager-loading name that names no relationship."""


@dataclass(frozen=True)
class EagerPath:
    """A resolved relationship path: loads of ``root`` rows also load ``relationships``."""

    name: str                                       # canonical "Class.attr[.attr]"
    root: Mapper[Any]
    relationships: tuple[RelationshipProperty[Any], ...]

    @property
    def option_text(self) -> str:
        """The loader option as code, e.g. ``selectinload(OnboardingTask.assignee)``."""
        return ".".join(f"selectinload({p.parent.class_.__name__}.{p.key})" for p in self.relationships)


def resolve(name: str) -> EagerPath | str:
    """An :class:`EagerPath` for ``name``, or :data:`WORKFLOWABLE`; else UnknownRelationshipError."""
    if name == WORKFLOWABLE:
        return WORKFLOWABLE
    parts = name.split(".")
    execution_mapper = sa_inspect(WorkflowExecution)
    if parts[0] in execution_mapper.relationships:          # "transitions"
        mapper, attributes = execution_mapper, parts
    else:
        n = _class_parts(parts)
        if n == 0:
            known = ", ".join(sorted(execution_mapper.relationships.keys()))
            what = "names a class but no relationship; use 'Class.relationship'" if _matching(name) else (
                f"is neither a WorkflowExecution relationship ({known}), nor {WORKFLOWABLE!r}, "
                "nor 'Class.relationship' of a mapped class")
            raise UnknownRelationshipError(f"{name!r} {what}")
        mapper, attributes = _find_mapper(".".join(parts[:n])), parts[n:]
    relationships = []
    current = mapper
    for key in attributes:
        prop = current.relationships.get(key)
        if prop is None:
            known = ", ".join(sorted(current.relationships.keys())) or "none"
            raise UnknownRelationshipError(
                f"{current.class_.__name__} has no relationship {key!r} (its relationships: {known})")
        relationships.append(prop)
        current = prop.mapper
    canonical = ".".join([mapper.class_.__name__] + [p.key for p in relationships])
    return EagerPath(canonical, mapper, tuple(relationships))


# -- the registry of what is enabled ------------------------------------------------------------

class _Registry:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.paths: dict[str, EagerPath | str] = {}
        self.owners: dict[int, set[str]] = defaultdict(set)
        self.plan: dict[Mapper[Any], tuple[EagerPath, ...]] = {}
        self.workflowable = False
        self.installed = False

    def rebuild(self) -> None:
        plan: dict[Mapper[Any], list[EagerPath]] = defaultdict(list)
        for key, count in self.counts.items():
            path = self.paths[key]
            if count > 0 and isinstance(path, EagerPath):
                plan[path.root].append(path)
        self.plan = {mapper: tuple(paths) for mapper, paths in plan.items()}
        self.workflowable = self.counts.get(WORKFLOWABLE, 0) > 0
        wanted = bool(self.plan) or self.workflowable
        if wanted and not self.installed:
            event.listen(Session, "do_orm_execute", _on_orm_execute)
            self.installed = True
        elif not wanted and self.installed:
            event.remove(Session, "do_orm_execute", _on_orm_execute)
            self.installed = False


_registry = _Registry()


def enable(names: Iterable[str], owner: object) -> tuple[str, ...]:
    """Eager-load ``names`` in every session from now on; return their canonical names."""
    resolved = [(path if isinstance(path, str) else path.name, path)
                for path in (resolve(name) for name in names)]      # all resolved before any applies
    with _registry.lock:
        mine = _registry.owners[id(owner)]
        for key, path in resolved:
            if key not in mine:
                mine.add(key)
                _registry.counts[key] += 1
                _registry.paths[key] = path
        _registry.rebuild()
    return tuple(key for key, _ in resolved)


def disable(owner: object) -> None:
    """Remove everything ``owner`` enabled (what other owners enabled stays)."""
    with _registry.lock:
        for key in _registry.owners.pop(id(owner), set()):
            _registry.counts[key] -= 1
            if _registry.counts[key] <= 0:
                del _registry.counts[key]
                _registry.paths.pop(key, None)
        _registry.rebuild()


def enabled(owner: object | None = None) -> tuple[str, ...]:
    """What ``owner`` enabled, or (``None``) everything enabled in the process."""
    with _registry.lock:
        if owner is None:
            return tuple(sorted(_registry.counts))
        return tuple(sorted(_registry.owners.get(id(owner), ())))


# -- the listener ---------------------------------------------------------------------------

def _on_orm_execute(state: Any) -> Any:
    if not state.is_select or state.is_column_load:
        return None
    plan, workflowable = _registry.plan, _registry.workflowable
    try:
        statement = state.statement
        paths: list[EagerPath] = []
        loads_executions = False
        for description in statement.column_descriptions:
            entity = description.get("entity")
            if entity is None or description.get("expr") is not entity or description.get("aliased"):
                continue                                    # columns, or an aliased entity
            mapper = sa_inspect(entity).mapper
            for base in mapper.iterate_to_root():
                paths.extend(plan.get(base, ()))
            loads_executions = loads_executions or mapper.class_ is WorkflowExecution
        if paths:
            prefix = _lazy_load_prefix(state)
            if prefix is not None:
                state.statement = statement.options(*(_option(prefix, p) for p in paths))
    except Exception:
        health.failed("adding eager-loading options")
        return None
    if workflowable and loads_executions and not state.is_relationship_load:
        return _with_workflowables(state)
    return None


def _lazy_load_prefix(state: Any) -> tuple[RelationshipProperty[Any], ...] | None:
    """The relationships a lazy load came through (``()`` for a top-level query)."""
    if not state.is_relationship_load:
        return ()
    path = state.loader_strategy_path
    props = tuple(getattr(path, "path", ())[1::2])
    if not props or not all(isinstance(p, RelationshipProperty) for p in props):
        return None
    return props


def _option(prefix: tuple[RelationshipProperty[Any], ...], path: EagerPath) -> Any:
    option: Any = None
    for prop in prefix:
        attribute = prop.class_attribute
        option = defaultload(attribute) if option is None else option.defaultload(attribute)
    for prop in path.relationships:
        attribute = prop.class_attribute
        option = selectinload(attribute) if option is None else option.selectinload(attribute)
    return option


def _with_workflowables(state: Any) -> Any:
    options = state.execution_options
    if options.get("yield_per") or options.get("stream_results"):
        return None                                        # never buffer a streamed result
    frozen = state.invoke_statement().freeze()
    try:
        executions = [obj for obj in _objects(frozen.data) if isinstance(obj, WorkflowExecution)]
        if len(executions) >= 2:
            preload_workflowables(state.session, executions)
    except Exception:
        health.failed("preloading workflowables")
    return frozen()


def _objects(data: Iterable[Any]) -> Iterable[Any]:
    for row in data:
        if isinstance(row, WorkflowExecution):
            yield row
        elif isinstance(row, tuple):                       # Row objects are tuples
            yield from row


def preload_workflowables(session: Session, executions: list[WorkflowExecution]) -> int:
    """Load the workflowables of ``executions``, one query per type; return the queries run."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for execution in executions:
        values = execution.__dict__                        # never trigger a load from here
        kind, ident = values.get("workflowable_type"), values.get("workflowable_id")
        if kind and ident is not None:
            wanted[kind].add(ident)
    queries = 0
    for kind, idents in wanted.items():
        try:
            cls = resolve_import_path(kind)
            mapper = sa_inspect(cls)
        except Exception:          # a type that no longer imports, or is not mapped
            continue
        pk = mapper.primary_key[0]
        convert = pk.type.python_type
        keys = sorted({convert(i) for i in idents})
        missing = [k for k in keys if identity_key(cls, k) not in session.identity_map]
        loaded: dict[Any, Any] = {k: session.identity_map.get(identity_key(cls, k)) for k in keys if k not in missing}
        for start in range(0, len(missing), _PRELOAD_CHUNK):
            for record in session.scalars(select(cls).where(pk.in_(missing[start:start + _PRELOAD_CHUNK]))):
                loaded[mapper.primary_key_from_instance(record)[0]] = record
            queries += 1
        for execution in executions:
            values = execution.__dict__
            if values.get("workflowable_type") == kind and values.get("workflowable_id") is not None:
                record = loaded.get(convert(values["workflowable_id"]))
                if record is not None:
                    # a strong reference: the identity map holds objects weakly
                    execution._flowscope_workflowable = record  # type: ignore[attr-defined]
    return queries


# -- finding mapped classes ---------------------------------------------------------------

def _registries() -> set[Any]:
    try:
        return set(importlib.import_module("sqlalchemy.orm.mapper")._all_registries())
    except Exception:   # a SQLAlchemy without the private helper: walk the declarative bases
        found, stack = set(), list(DeclarativeBase.__subclasses__())
        while stack:
            cls = stack.pop()
            registry = cls.__dict__.get("registry")
            if registry is not None:
                found.add(registry)
            stack.extend(cls.__subclasses__())
        return found


def _all_mappers() -> list[Mapper[Any]]:
    return [mapper for registry in _registries() for mapper in registry.mappers]


def _class_parts(parts: list[str]) -> int:
    """How many leading parts of ``parts`` name a mapped class, leaving at least one attribute
    (1 for "Class.attr", 3 for "package.module.Class.attr"); 0 when none does."""
    for n in range(len(parts) - 1, 0, -1):
        if _matching(".".join(parts[:n])):
            return n
    return 0


def _matching(name: str) -> list[Mapper[Any]]:
    return [m for m in _all_mappers()
            if name in (m.class_.__name__, m.class_.__qualname__, f"{m.class_.__module__}.{m.class_.__qualname__}")]


def _find_mapper(name: str) -> Mapper[Any]:
    mappers = _matching(name)
    if len(mappers) > 1:
        choices = ", ".join(sorted(f"{m.class_.__module__}.{m.class_.__qualname__}" for m in mappers))
        raise UnknownRelationshipError(f"{name!r} is ambiguous ({choices}); use 'module.Class.attribute'")
    return mappers[0]


def disable_all() -> None:
    """Remove all eager loading, of every owner (tests; a process shutting the feature off)."""
    with _registry.lock:
        _registry.counts.clear()
        _registry.paths.clear()
        _registry.owners.clear()
        _registry.rebuild()
