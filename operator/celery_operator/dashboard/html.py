"""Small HTML building blocks: everything from an object is escaped here."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, tzinfo
from html import escape
from typing import Any
from urllib.parse import urlencode

import yaml

from celery_operator.api import format_time
from celery_operator.kubectl_plugin.output import local_time, until

SHOWN_CHARS = 4096  # a value longer than this is cut, with a link to the full YAML
NONE = "—"


def e(value: Any) -> str:
    return escape(str(value), quote=True)


def when(moment: datetime | None, now: datetime, zone: tzinfo) -> str:
    """Local time with the time to go (or since) in a tooltip, UTC in the markup."""
    if moment is None:
        return NONE
    return (f'<time datetime="{e(format_time(moment))}" title="{e(until(moment, now))}">'
            f"{e(local_time(moment, zone))}</time>")


def age(moment: datetime | None, now: datetime) -> str:
    """How long ago, as kubectl's AGE column reads ("5m", "2d3h"), the time in a tooltip."""
    if moment is None:
        return NONE
    return (f'<time datetime="{e(format_time(moment))}" title="{e(format_time(moment))}">'
            f'{e(until(moment, now).removesuffix(" ago").removeprefix("in "))}</time>')


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """`rows` hold markup already escaped."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
                   for row in rows)
    return f'<table class="{e(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def link(path: str, text: str, **params: str) -> str:
    query = f"?{urlencode(params)}" if params else ""
    return f'<a href="{e(path + query)}">{e(text)}</a>'


def cut(text: str, full: str, limit: int = SHOWN_CHARS) -> str:
    """<pre> of `text`, cut at `limit` characters with a link to the full YAML."""
    if len(text) <= limit:
        return f"<pre>{e(text)}</pre>"
    return (f'<pre>{e(text[:limit])}…</pre><p class="note">cut at {limit} of {len(text)} '
            f'characters: <a href="{e(full)}">the full YAML</a></p>')


def as_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def as_yaml(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True)


def button(label: str, action: str, plural: str, namespace: str, name: str, confirm: str,
           **extra: str) -> str:
    data = "".join(f' data-{k}="{e(v)}"' for k, v in extra.items())
    return (f'<button type="button" class="action" data-action="{e(action)}" '
            f'data-plural="{e(plural)}" data-namespace="{e(namespace)}" data-name="{e(name)}" '
            f'data-confirm="{e(confirm)}"{data}>{e(label)}</button>')
