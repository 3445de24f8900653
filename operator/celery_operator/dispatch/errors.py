"""Publish errors with a taxonomy, and exception text that is safe to show a tenant.

Events and status are read by whoever may read the object, not only by whoever runs the
operator: they never carry the broker's URL, host, port or credentials. The original
exception stays chained (`__cause__`) for the operator's own logs.
"""

from __future__ import annotations

import re

# Longest text public_error returns: enough for a diagnosis, short enough for an Event.
PUBLIC_MAX = 300


class PublishFailed(Exception):
    """A task message was not published.

    `permanent`: retrying the same message cannot succeed (it cannot be encoded, the broker
    refuses it, its options are invalid). Otherwise it may succeed later (broker down or
    busy, no queue bound yet, anything unknown).
    `reason`: CamelCase, for an Event reason or a condition (e.g. "BrokerUnavailable").
    `public_message`: what happened, without any broker address or credential.
    """

    def __init__(self, *, permanent: bool, reason: str, public_message: str) -> None:
        super().__init__(public_message)
        self.permanent = permanent
        self.reason = reason
        self.public_message = public_message

    def __repr__(self) -> str:
        return (
            f"PublishFailed(permanent={self.permanent}, reason={self.reason!r}, "
            f"public_message={self.public_message!r})"
        )


_HOST = r"(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]|(?=[\w.-]*[A-Za-z])[\w-]+(?:\.[\w-]+)*)"
_SCRUBS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Whole URLs first: they hold all the rest.
    (re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://\S+"), "<url>"),
    # user:password@ without a scheme.
    (re.compile(r"[^\s@/:]*:[^\s@]*@"), "***@"),
    # host:port (IPv4, [IPv6], a name with a letter), as redis-py and kombu print them;
    # not a time of day (digits only, or followed by another ':').
    (re.compile(rf"(?<![\w.:-]){_HOST}:\d{{1,5}}(?![\w:])"), "<address>"),
    # Bare IPv6 (redis-py prints "::1:6379"): '::' or five colons or more.
    (re.compile(r"(?<![\w:])[0-9A-Fa-f]*::[0-9A-Fa-f:]*(?![\w:])"), "<address>"),
    (re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){5,}[0-9A-Fa-f]{1,4}(?![\w:])"), "<address>"),
    # Bare IPv4.
    (re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w.]*\w)"), "<address>"),
    # A unix socket's path.
    (re.compile(r"(unix socket:?\s*)\S+?(?=\.?(?:\s|$))"), r"\1<path>"),
)


def scrub(text: str) -> str:
    """`text` without URLs, host:port pairs, IP addresses, socket paths or credentials."""
    for pattern, replacement in _SCRUBS:
        text = pattern.sub(replacement, text)
    return text


def public_error(exc: BaseException) -> str:
    """`Type: message` of `exc`, scrubbed (see `scrub`) and at most PUBLIC_MAX long."""
    if isinstance(exc, PublishFailed):
        return exc.public_message[:PUBLIC_MAX]
    message = scrub(str(exc).strip())
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= PUBLIC_MAX else text[: PUBLIC_MAX - 1] + "…"
