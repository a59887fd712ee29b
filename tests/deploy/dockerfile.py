"""A small Dockerfile reader for the deploy tests: stages, instructions, exec-form args.

It understands what the project's Dockerfile uses: comments, line continuations, global
``ARG``s before the first ``FROM`` (with defaults, substituted into ``FROM``), named stages,
exec-form (JSON) and shell-form arguments, and ``ENV`` in both ``K=V`` and ``K V`` forms.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass(frozen=True)
class Instruction:
    """One instruction: upper-case keyword, its raw argument text and its first line number."""

    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str]:
        """The arguments as a JSON array (``CMD ["a", "b"]``); ValueError if shell form."""
        try:
            value = json.loads(self.args)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"line {self.line}: {self.keyword} is not in exec form (a JSON array): "
                f"{self.args!r}"
            ) from exc
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"line {self.line}: {self.keyword} must be a JSON array of strings")
        return value


@dataclass
class Stage:
    """One build stage: its resolved base image, its name and its instructions."""

    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        """Every instruction of this stage with ``keyword``, in order."""
        return [ins for ins in self.instructions if ins.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        """The last instruction with ``keyword`` (the effective one for CMD, USER, ...)."""
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        """Every variable set by this stage's ``ENV`` instructions (later ones win)."""
        values: dict[str, str] = {}
        for ins in self.all("ENV"):
            tokens = shlex.split(ins.args)
            if tokens and "=" not in tokens[0]:
                values[tokens[0]] = " ".join(tokens[1:])
                continue
            for token in tokens:
                key, sep, value = token.partition("=")
                if not sep:
                    raise ValueError(f"line {ins.line}: ENV token {token!r} has no '='")
                values[key] = value
        return values


def _logical_lines(text: str) -> list[tuple[int, str]]:
    lines: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        lines.append((start, " ".join(part for part in pending if part)))
        pending = []
    if pending:
        raise ValueError(f"line {start}: the file ends inside a continued instruction")
    return lines


def _substitute(text: str, args: dict[str, str]) -> str:
    return _VAR.sub(lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text)


def parse_dockerfile(text: str) -> list[Stage]:
    """The build stages of a Dockerfile, in order (the last one is the default target)."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line, logical in _logical_lines(text):
        keyword, _, args = logical.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=_substitute(parts[0], global_args), name=name))
        elif not stages:
            if keyword != "ARG":
                raise ValueError(f"line {line}: only ARG may come before the first FROM")
            key, _, default = args.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, args, line))
    if not stages:
        raise ValueError("the Dockerfile has no FROM instruction")
    return stages


def read_stages(path: Path) -> dict[str, Stage]:
    """The named stages of the Dockerfile at ``path``, by name, in file order."""
    stages = parse_dockerfile(path.read_text(encoding="utf-8"))
    unnamed = [stage.base for stage in stages if stage.name is None]
    if unnamed:
        raise ValueError(f"{path}: every stage must be named (FROM image AS name): {unnamed}")
    return {stage.name: stage for stage in stages if stage.name is not None}
