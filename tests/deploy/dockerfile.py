"""The Dockerfile's build stages for the deploy tests, read with BuildKit's own parser (the
``dockerfile`` package wraps moby/buildkit's Go parser: continuations, comments, exec form,
flags and ``ENV`` pairs are its work). Here: global ``ARG`` defaults substituted into ``FROM``,
and the instructions grouped by named stage."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import dockerfile

_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass
class Stage:
    """One build stage: its resolved base image, its name and its instructions."""

    base: str
    name: str | None
    commands: list[dockerfile.Command] = field(default_factory=list)

    def all(self, keyword: str) -> list[dockerfile.Command]:
        """Every instruction of this stage with ``keyword`` (upper case), in order."""
        return [command for command in self.commands if command.cmd == keyword]

    def last(self, keyword: str) -> dockerfile.Command | None:
        """The last instruction with ``keyword`` (the effective one for CMD, USER, ...)."""
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        """Every variable set by this stage's ``ENV`` instructions (later ones win), with the
        shell quoting the parser leaves in values removed as the build does."""
        values: dict[str, str] = {}
        for command in self.all("ENV"):
            pairs = command.value
            for key, value in zip(pairs[::2], pairs[1::2], strict=True):
                values[key] = " ".join(shlex.split(value))
        return values


def parse_dockerfile(text: str) -> list[Stage]:
    """The build stages of a Dockerfile, in order (the last one is the default target)."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for command in dockerfile.parse_string(text):
        if command.cmd == "FROM":
            image, *rest = command.value
            name = rest[1] if len(rest) == 2 and rest[0].upper() == "AS" else None
            base = _VAR.sub(lambda m: global_args.get(m.group(1) or m.group(2), m.group(0)), image)
            stages.append(Stage(base=base, name=name))
        elif stages:
            stages[-1].commands.append(command)
        elif command.cmd == "ARG":
            key, _, default = command.value[0].partition("=")
            global_args[key] = default
        else:
            raise ValueError(f"line {command.start_line}: only ARG may come before the first FROM")
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
