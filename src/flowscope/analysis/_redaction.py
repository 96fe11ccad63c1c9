"""Secret-looking names: what recommendations and results may say about context keys.

    >>> is_secret_key("api_key"), is_secret_key("stripeToken"), is_secret_key("report")
    (True, True, False)
    >>> shown_key("db_password")
    '[redacted]'

Design decision: recommendations and optimization results never carry context *values* at
all (only sizes and digests); key *names* appear so a user can find the value, except names
that look like secrets (a key such as ``reset_token_for_alice@example.com`` can itself be
sensitive), which are replaced by ``[redacted]``. The patterns are the usual suspects,
matched case-insensitively anywhere in the name.
"""

from __future__ import annotations

import re

REDACTED = "[redacted]"
_SECRET = re.compile(
    r"pass(word|wd|phrase)?|secret|token|api[_-]?key|apikey|private[_-]?key|credential|"
    r"auth(?!ors?(?![a-z]))|session[_-]?id|cookie|signature|ssn|card[_-]?number|cvv",
    re.IGNORECASE)


def is_secret_key(name: str) -> bool:
    """True when ``name`` looks like the name of a secret (password, token, api_key, ...)."""
    return bool(_SECRET.search(name))


def shown_key(name: str) -> str:
    """``name``, or ``[redacted]`` when it looks like the name of a secret."""
    return REDACTED if is_secret_key(name) else name
