"""Why a generated program failed: the paper's bracket/syntax error taxonomy, with truncation as its own class.

The original analysis counted outputs cut at the token limit as syntax errors (an unfinished function does not
parse); here a sample whose generation stopped at the length limit is `truncated` whatever else is wrong with it.
Syntax is checked with `compile()`, which parses without running anything; runtime classes come from the sandbox's
report of the exception it saw (the program itself is never run here).
"""

from dataclasses import dataclass

CLASSES = ("passed", "truncated", "bracket", "syntax", "undefined_name", "timeout", "assertion", "other")

# CPython's messages for unbalanced brackets: "'(' was never closed", "unmatched ')'",
# "closing parenthesis ']' does not match opening parenthesis '('", and "unexpected EOF" on older versions.
_BRACKET_MARKERS = ("was never closed", "unmatched", "does not match opening", "closing parenthesis", "unexpected eof")


@dataclass(frozen=True)
class Outcome:
    """What the sandbox saw: `status` is passed, failed or timeout; `exception` the exception class name, if any."""

    status: str
    exception: str | None = None
    message: str = ""


def syntax_class(code: str) -> str | None:
    """'bracket' or 'syntax' when `code` does not parse, None when it does."""
    try:
        compile(code, "<generated>", "exec")
    except SyntaxError as exc:  # IndentationError and TabError are SyntaxErrors too
        message = (exc.msg or "").lower()
        return "bracket" if any(m in message for m in _BRACKET_MARKERS) else "syntax"
    except ValueError:  # e.g. source with NUL bytes
        return "syntax"
    return None


def classify(code: str, finish_reason: str, outcome: Outcome) -> str:
    """The failure class of one sample, in order of precedence: passed, truncated, syntax classes, runtime classes."""
    if outcome.status == "passed":
        return "passed"
    if finish_reason == "length":
        return "truncated"
    parsed = syntax_class(code)
    if parsed:
        return parsed
    if outcome.status == "timeout":
        return "timeout"
    if outcome.exception in ("NameError", "UnboundLocalError"):
        return "undefined_name"
    if outcome.exception == "AssertionError":
        return "assertion"
    if outcome.exception in ("SyntaxError", "IndentationError", "TabError"):
        return "bracket" if any(m in outcome.message.lower() for m in _BRACKET_MARKERS) else "syntax"
    return "other"
