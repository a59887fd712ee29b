"""The readers the deploy tests rely on, on small hand-written inputs."""

from __future__ import annotations

import pytest

from tests.deploy.dockerfile import parse_dockerfile
from tests.deploy.files import compose_environment, interpolate, interpolation_variables

SAMPLE = """\
# syntax=docker/dockerfile:1
ARG BASE=python:3.11-slim
FROM ${BASE} AS build
ENV A=1 \\
    B="two words"
RUN echo one \\
    # a comment inside a continued instruction
    && echo two
FROM $BASE AS run
ENV LEGACY some value
CMD ["uvicorn", "app"]
"""


def test_dockerfile_stages_args_and_env() -> None:
    build, run = parse_dockerfile(SAMPLE)
    assert (build.name, build.base) == ("build", "python:3.11-slim")
    assert (run.name, run.base) == ("run", "python:3.11-slim")
    assert build.env() == {"A": "1", "B": "two words"}
    assert run.env() == {"LEGACY": "some value"}
    (step,) = build.all("RUN")
    assert step.start_line == 6
    cmd = run.last("CMD")
    assert cmd is not None and cmd.json and cmd.value == ("uvicorn", "app")
    assert run.last("RUN") is None


def test_dockerfile_errors_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="no FROM"):
        parse_dockerfile("ARG X=1\n")
    with pytest.raises(ValueError, match="only ARG"):
        parse_dockerfile("RUN true\nFROM scratch\n")


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A:-x}", {}, "x"),
        ("${A:-x}", {"A": ""}, "x"),
        ("${A-x}", {"A": ""}, ""),
        ("${A:-x}", {"A": "set"}, "set"),
        ("${A}/b", {"A": "a"}, "a/b"),
        ("${A}/b", {}, "/b"),
        ("${A:?need A}", {"A": "ok"}, "ok"),
    ],
)
def test_interpolate_follows_compose(text: str, env: dict[str, str], expected: str) -> None:
    assert interpolate(text, env) == expected


def test_interpolate_refuses_a_missing_required_variable() -> None:
    with pytest.raises(ValueError, match="need A"):
        interpolate("${A:?need A}", {"A": ""})


def test_interpolation_variables_and_environment_forms() -> None:
    tree = {"a": ["${X:-1}", {"b": "${Y}"}], "c": 3}
    assert interpolation_variables(tree) == {"X", "Y"}
    assert compose_environment({"environment": ["A=1", "B"]}) == {"A": "1", "B": None}
    assert compose_environment({"environment": {"A": 1, "B": None}}) == {"A": "1", "B": None}
