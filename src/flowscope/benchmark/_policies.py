"""Action policies: which of the available actions a load-test execution performs next.

    >>> load_test(DocumentApproval)                                  # FirstAvailable()
    >>> load_test(DocumentApproval, action_policy="random", seed=7)  # RandomAvailable()
    >>> load_test(DocumentApproval, action_policy=lambda execution, available: available[-1])

A policy is asked once per operation with the execution (attached to the worker's session)
and the actions available to the load test's user right now (guards applied, never empty);
it returns one of them, or ``None`` to stop that execution (the operations it leaves are
counted with those that had no available action).

Design decisions:
- Randomness is never global: every execution gets its own ``random.Random`` seeded from the
  load test's seed and the execution's index (``"{seed}/{index}"``; string seeds are hashed
  with SHA-512, so they do not depend on ``PYTHONHASHSEED``). The path an execution takes is
  then the same whichever thread or process runs it and however they interleave.
- Policies are small frozen dataclasses, so they pickle by reference to their class and the
  same policy object runs in worker processes (``mode="processes"``); a user's callable must
  likewise be importable (a module-level function) in that mode.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ._errors import InvalidPolicyError

PolicyFunction = Callable[[Any, list[str]], "str | None"]


@runtime_checkable
class ActionPolicy(Protocol):
    """Chooses the next action of one execution."""

    def choose(self, execution: Any, available: Sequence[str], rng: random.Random) -> str | None:
        ...


@dataclass(frozen=True)
class FirstAvailable:
    """The first available action, in declaration order (the default): a deterministic happy path."""

    def choose(self, execution: Any, available: Sequence[str], rng: random.Random) -> str | None:
        return available[0]

    def __str__(self) -> str:
        return "first available action"


@dataclass(frozen=True)
class RandomAvailable:
    """A uniformly random available action, from the execution's own seeded generator."""

    def choose(self, execution: Any, available: Sequence[str], rng: random.Random) -> str | None:
        return rng.choice(list(available))

    def __str__(self) -> str:
        return "random available action (seeded per execution)"


@dataclass(frozen=True)
class CallablePolicy:
    """A user's ``fn(execution, available_actions) -> action | None``."""

    fn: PolicyFunction

    def choose(self, execution: Any, available: Sequence[str], rng: random.Random) -> str | None:
        return self.fn(execution, list(available))

    def __str__(self) -> str:
        return f"callable {getattr(self.fn, '__module__', '?')}.{getattr(self.fn, '__qualname__', self.fn)!s}"


POLICIES: dict[str, ActionPolicy] = {"first": FirstAvailable(), "random": RandomAvailable()}


def resolve_policy(policy: str | ActionPolicy | PolicyFunction | None) -> ActionPolicy:
    """``None``/``"first"``, ``"random"``, an :class:`ActionPolicy`, or a callable."""
    if policy is None:
        return POLICIES["first"]
    if isinstance(policy, str):
        try:
            return POLICIES[policy]
        except KeyError:
            raise InvalidPolicyError(f"unknown action_policy {policy!r}; use one of {', '.join(POLICIES)}, "
                                     "an ActionPolicy, or a callable(execution, available_actions)") from None
    if isinstance(policy, ActionPolicy):
        return policy
    if callable(policy):
        return CallablePolicy(policy)
    raise InvalidPolicyError(f"action_policy must be 'first', 'random', an ActionPolicy or a "
                             f"callable(execution, available_actions); got {type(policy).__name__}")


def execution_rng(seed: int, index: int) -> random.Random:
    """The generator of execution ``index`` (see the module docstring)."""
    return random.Random(f"{seed}/{index}")
