"""``[tool.flowscope]`` in ``pyproject.toml``: thresholds, per-operation overrides, ignore rules.

    [tool.flowscope]
    fail_on = "medium"                              # flowscope check's default --fail-on

    [tool.flowscope.thresholds]
    n_plus_one = 8
    high_query_count = 80

    [tool.flowscope.thresholds.per_operation."GET /api/reports/*"]
    slow_operation_ms = 2000

    [[tool.flowscope.ignore]]
    kind = "high_query_count"
    operation = "tests/fixtures/*"                  # glob on the operation name
    reason = "the fixtures build the rows one by one on purpose"

Read by ``flowscope check`` (from the current directory up to the first ``pyproject.toml``, or
``--config FILE``) and by the pytest plugin (from the rootdir). An ignore rule matches a
finding when every key it gives matches: ``kind`` (required), ``operation``, ``fingerprint``,
``relationship`` and ``file`` (``fnmatch`` globs, case-sensitive); ``reason`` is required, so
every silenced finding says why. A bad key, type or value is a :class:`ConfigError` naming
the file, the key and what is allowed.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from ..analysis._findings import Thresholds
from ..analysis._recommendation import KINDS, Recommendation
from ._identity import call_site_parts

FAIL_ON = ("low", "medium", "high", "never")
_THRESHOLDS = {f.name: f.type for f in fields(Thresholds) if f.name != "per_operation"}
_RULE_KEYS = ("kind", "operation", "fingerprint", "relationship", "file", "reason")


class ConfigError(ValueError):
    """``[tool.flowscope]`` cannot be used as written."""


@dataclass(frozen=True)
class IgnoreRule:
    kind: str
    reason: str
    operation: str = "*"
    fingerprint: str | None = None
    relationship: str | None = None
    file: str | None = None

    def matches(self, rec: Recommendation) -> bool:
        if rec.kind != self.kind or not fnmatchcase(rec.operation, self.operation):
            return False
        checks = ((self.fingerprint, rec.evidence.fingerprint), (self.relationship, rec.evidence.relationship),
                  (self.file, call_site_parts(rec.evidence.call_site)[0]))
        return all(glob is None or (value is not None and fnmatchcase(value, glob)) for glob, value in checks)


@dataclass(frozen=True)
class ProjectConfig:
    thresholds: Thresholds = field(default_factory=Thresholds)
    ignore: tuple[IgnoreRule, ...] = ()
    fail_on: str | None = None
    source: str | None = None          # the file it was read from (None: defaults)

    def split(self, recommendations: tuple[Recommendation, ...]) -> tuple[
            tuple[Recommendation, ...], tuple[tuple[Recommendation, IgnoreRule], ...]]:
        """(kept, ignored with the rule that matched)."""
        kept, ignored = [], []
        for rec in recommendations:
            rule = next((r for r in self.ignore if r.matches(rec)), None)
            if rule is None:
                kept.append(rec)
            else:
                ignored.append((rec, rule))
        return tuple(kept), tuple(ignored)


def find_pyproject(start: Path) -> Path | None:
    """The first ``pyproject.toml`` in ``start`` or a folder above it."""
    for folder in (start.resolve(), *start.resolve().parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_project_config(path: Path | None = None, start: Path | None = None) -> ProjectConfig:
    """``[tool.flowscope]`` of ``path``, or of the ``pyproject.toml`` found from ``start`` (the
    current directory) upwards; defaults when there is none or it has no such table."""
    if path is None:
        path = find_pyproject(start or Path.cwd())
        if path is None:
            return ProjectConfig()
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"{path}: cannot read it ({err.strerror or err})") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    table = document.get("tool", {}).get("flowscope")
    if table is None:
        return ProjectConfig(source=str(path))
    return parse_config(table, str(path))


def parse_config(table: Any, source: str) -> ProjectConfig:
    where = f"{source}: [tool.flowscope]"
    _table(table, where)
    _known(table, ("fail_on", "thresholds", "ignore"), where)
    fail_on = table.get("fail_on")
    if fail_on is not None and fail_on not in FAIL_ON:
        raise ConfigError(f"{where} fail_on = {fail_on!r}: expected one of {', '.join(FAIL_ON)}")
    thresholds = _thresholds(table.get("thresholds", {}), f"{where}.thresholds", allow_per_operation=True)
    rules = table.get("ignore", [])
    if not isinstance(rules, list):
        raise ConfigError(f"{where} ignore: expected an array of tables ([[tool.flowscope.ignore]])")
    return ProjectConfig(thresholds, tuple(_rule(rule, f"{where}.ignore[{i}]") for i, rule in enumerate(rules)),
                         fail_on, source)


def _thresholds(table: Any, where: str, allow_per_operation: bool) -> Thresholds:
    _table(table, where)
    known = (*_THRESHOLDS, "per_operation") if allow_per_operation else tuple(_THRESHOLDS)
    _known(table, known, where)
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key == "per_operation":
            _table(value, f"{where}.per_operation")
            values[key] = {glob: _thresholds(sub, f"{where}.per_operation.{glob!r}", allow_per_operation=False)
                           for glob, sub in value.items()}
            continue
        wants_int = _THRESHOLDS[key] in ("int", int)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (wants_int and not isinstance(value, int)):
            raise ConfigError(f"{where} {key} = {value!r}: expected {'an integer' if wants_int else 'a number'}")
        if value <= 0:
            raise ConfigError(f"{where} {key} = {value!r}: expected a value above 0")
        values[key] = value
    return Thresholds(**values)


def _rule(rule: Any, where: str) -> IgnoreRule:
    _table(rule, where)
    _known(rule, _RULE_KEYS, where)
    for key, value in rule.items():
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where} {key} = {value!r}: expected a non-empty string")
    if "kind" not in rule or "reason" not in rule:
        missing = " and ".join(key for key in ("kind", "reason") if key not in rule)
        raise ConfigError(f"{where}: {missing} required (every ignored finding says which kind, and why)")
    if rule["kind"] not in KINDS:
        raise ConfigError(f"{where} kind = {rule['kind']!r}: expected one of {', '.join(KINDS)}")
    return IgnoreRule(**rule)


def _table(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table, got {type(value).__name__} {value!r:.60}")


def _known(table: dict, known: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r}; known keys: {', '.join(known)}")
