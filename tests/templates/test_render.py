"""The jinja2 environment: strict about missing variables, quoting per target language."""

from __future__ import annotations

import shlex

import jinja2
import pytest

from agentdeploy.templates.render import environment, render, shell_quote, systemd_argv


def test_missing_variable_is_an_error_not_an_empty_string():
    with pytest.raises(jinja2.UndefinedError, match="served_model_name"):
        render("systemd/vllm.service.j2", agent="a", vllm_argv=["x"], shutdown_timeout_s=90)


def test_environment_is_strict():
    assert environment().undefined is jinja2.StrictUndefined


def test_shell_quote_keeps_one_word():
    value = "agentdeploy[serving] @ https://example.invalid/a b.whl"
    assert shlex.split(shell_quote(value)) == [value]


@pytest.mark.parametrize("word, expected", [
    ("plain", "plain"),
    ("two words", '"two words"'),
    ("100%", "100%%"),
    ("$HOME", "$$HOME"),
    ('say "hi"', '"say \\"hi\\""'),
])
def test_systemd_quoting(word, expected):
    assert systemd_argv([word]) == expected


@pytest.mark.parametrize("word", ["intake\n", "us-east-1\nLD_PRELOAD=/tmp/evil.so", "a\rb", "tab\there", "nul\x00"])
def test_systemd_quoting_refuses_control_characters(word):
    """security.md finding 9: a newline in an Exec= word would start a directive of its own."""
    from agentdeploy.errors import InvalidInput

    with pytest.raises(InvalidInput, match="control character"):
        systemd_argv(["vllm", word])
