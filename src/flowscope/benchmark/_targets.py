"""Resolve ``module:name`` targets (``flowscope bench``, ``flowscope load-test``, ``load_test("...")``).

    >>> import_target("flowscope.examples:DocumentApproval")
    <class 'flowscope.examples.document_approval.DocumentApproval'>

Design decision: one resolver with one typed error (:class:`ImportTargetError`, a
``ValueError``) that says which part failed (the form, the module, the attribute) and how to
fix it, instead of a raw ``ModuleNotFoundError`` or ``AttributeError`` from deep inside.
``import_target`` also puts the current directory on ``sys.path`` when asked (as ``python -m``
does), so ``flowscope bench mymodule:fn`` works from a project's folder.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from ..workflows import Workflow
from ._errors import ImportTargetError, NotAWorkflowClassError


def import_target(target: str, *, from_current_directory: bool = False) -> Any:
    """The object named by ``module:qualified.name``."""
    module_name, colon, qualname = target.partition(":")
    if not colon or not module_name or not qualname:
        raise ImportTargetError(target, "expected 'module:name', e.g. flowscope.examples:DocumentApproval "
                                        "or mypackage.bench:encode_json")
    if from_current_directory and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ImportTargetError(target, f"module {module_name!r} cannot be imported ({err}); check the "
                                        "spelling and that it is on the Python path") from None
    except Exception as err:
        raise ImportTargetError(target, f"importing module {module_name!r} raised "
                                        f"{type(err).__name__}: {err}") from None
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportTargetError(target, f"module {module_name!r} has no attribute {qualname!r}") from None
    return obj


def workflow_class(value: Any, *, from_current_directory: bool = False) -> type[Workflow]:
    """A :class:`Workflow` subclass from a class or a ``module:ClassName`` string."""
    if isinstance(value, str):
        value = import_target(value, from_current_directory=from_current_directory)
    if not (isinstance(value, type) and issubclass(value, Workflow) and value is not Workflow):
        raise NotAWorkflowClassError(value)
    return value


def callable_target(target: str, *, from_current_directory: bool = False) -> Any:
    """A callable from a ``module:function`` string (called with no arguments by ``flowscope bench``)."""
    obj = import_target(target, from_current_directory=from_current_directory)
    if not callable(obj):
        raise ImportTargetError(target, f"it is a {type(obj).__name__}, not a callable; name a function "
                                        "that takes no arguments")
    return obj
