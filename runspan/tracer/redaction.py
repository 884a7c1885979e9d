"""Secrets removed from text before it becomes a span attribute.

The built-in patterns catch the credentials that most often end up in prompts, tool inputs and
error messages. They run first; the user's hook runs after them. A hook that fails withholds the
value instead of letting it through unredacted.

Every pattern starts with a fixed marker. Scanning for the markers with ``str.__contains__`` is
a few hundred nanoseconds, while running the expression over text that holds none of them costs
tens of microseconds per kilobyte, on every value of every run: the expression runs only when a
marker is there.
"""

from __future__ import annotations

import re

from runspan.tracer.settings import Redactor

REDACTED = "[REDACTED]"
WITHHELD = "[runspan: withheld, the redaction hook failed]"

_SECRET_PATTERNS = (
    # OpenAI, Anthropic and similar "sk-" keys, including project and admin keys.
    r"\bsk-[A-Za-z0-9_-]{20,}",
    # AWS access key ids.
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    # GitHub tokens (personal, OAuth, app, refresh) and fine-grained tokens.
    r"\bgh[pousr]_[A-Za-z0-9]{36,}",
    r"\bgithub_pat_[A-Za-z0-9_]{40,}",
    # Google API keys.
    r"\bAIza[0-9A-Za-z_-]{35}",
    # Slack tokens.
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}",
    # Stripe secret and restricted keys.
    r"\b[rs]k_(?:live|test)_[0-9A-Za-z]{16,}",
    # Hugging Face, Groq and Replicate tokens, GitLab personal access tokens.
    r"\bhf_[A-Za-z0-9]{30,}",
    r"\bgsk_[A-Za-z0-9]{40,}",
    r"\br8_[A-Za-z0-9]{30,}",
    r"\bglpat-[A-Za-z0-9_-]{20,}",
    # JSON Web Tokens: three base64url parts, the first two starting with '{"'.
    r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}",
)
_BEARER = r"(?P<bearer>\b[Bb]earer\s+)[A-Za-z0-9._~+/=-]{8,}"
# scheme://user:password@host - keep the user and host, drop the password.
_URL_PASSWORD = r"(?P<url>://[^\s:/@\"']+:)[^\s@/\"']+@"

_PATTERN = re.compile("|".join((*_SECRET_PATTERNS, _BEARER, _URL_PASSWORD)))
# A text holding none of these markers cannot match any pattern above. They are grouped under a
# character each marker of the group holds: a one-character search runs at memory speed, so a
# text without that character skips its whole group in one step, where searching for every
# marker cost about ten microseconds per kilobyte of content.
MARKER_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "_",
        (
            "ghp_",
            "gho_",
            "ghu_",
            "ghs_",
            "ghr_",
            "github_pat_",
            "k_live_",
            "k_test_",
            "hf_",
            "gsk_",
            "r8_",
        ),
    ),
    ("-", ("sk-", "glpat-", "xoxa-", "xoxb-", "xoxp-", "xoxo-", "xoxs-", "xoxr-")),
    ("A", ("AKIA", "ASIA", "AIza")),
    ("J", ("eyJ",)),
    ("/", ("://",)),
    ("earer", ("earer",)),
)


def _may_hold_a_secret(text: str) -> bool:
    for character, markers in MARKER_GROUPS:
        if character in text:
            for marker in markers:
                if marker in text:
                    return True
    return False


def _replace(match: re.Match[str]) -> str:
    if match.group("bearer"):
        return match.group("bearer") + REDACTED
    if match.group("url"):
        return match.group("url") + REDACTED + "@"
    return REDACTED


def redact(text: str, hook: Redactor | None) -> str:
    """Built-in patterns, then the user's hook; a failing or misbehaving hook withholds."""
    if _may_hold_a_secret(text):
        text = _PATTERN.sub(_replace, text)
    if hook is None:
        return text
    try:
        result = hook(text)
    except Exception:
        return WITHHELD
    return result if isinstance(result, str) else WITHHELD
