"""Tiny HTML helpers: every value goes through `esc` unless it is already `Markup` (built here, escaped).

No template engine: pages are short, and building them in Python keeps the one rule in one place: text from
the lab (certificate subjects, SNI names, log fields, what the user typed) is escaped, never markup.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from string import Template
from typing import Any


class Markup(str):
    """A string already safe to put in a page."""


def esc(value: Any) -> Markup:
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


def join(parts: Iterable[Any], sep: str = "") -> Markup:
    return Markup(sep.join(esc(p) for p in parts))


def tag(element: str, content: Any = "", /, **attrs: Any) -> Markup:
    """<element attrs>content</element>; attribute names: trailing `_` dropped, `_` -> `-`; False/None omitted."""
    return Markup(f"<{element}{attributes(attrs)}>{esc(content)}</{element}>")


def void(element: str, /, **attrs: Any) -> Markup:
    return Markup(f"<{element}{attributes(attrs)}>")


def attributes(attrs: Mapping[str, Any]) -> str:
    out = []
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        key = key.rstrip("_").replace("_", "-")
        out.append(f" {key}" if value is True else f' {key}="{esc(value)}"')
    return "".join(out)


def table(headers: Sequence[Any], rows: Iterable[Sequence[Any]], **attrs: Any) -> Markup:
    head = join(tag("th", h) for h in headers)
    body = join(tag("tr", join(tag("td", c) for c in row)) for row in rows)
    return tag("table", Markup(f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody>"), **attrs)


Errors = dict[str, list[dict[str, Any]]]  # form field -> [{"message", "hint", "code", "severity"}]


def field_errors(errors: Errors, name: str) -> Markup:
    """The messages about one field, right under it (role=alert so screen readers say them)."""
    items = []
    for e in errors.get(name, []):
        severity = e.get("severity", "error")
        text = join([tag("strong", e.get("code") or severity), ": ", e.get("message", "")])
        if e.get("hint"):
            text = join([text, tag("span", f"hint: {e['hint']}", class_="hint")])
        items.append(tag("li", text, class_=severity))
    if not items:
        return Markup("")
    return tag("ul", join(items), class_="field-errors", id=f"errors-{name}", role="alert")


def _wrap(name: str, label: str, control: Markup, errors: Errors, help: str | None = None) -> Markup:
    bad = " invalid" if any(e.get("severity", "error") == "error" for e in errors.get(name, [])) else ""
    parts = [tag("label", label, for_=f"f-{name}"), control]
    if help:
        parts.append(tag("small", help, class_="help"))
    parts.append(field_errors(errors, name))
    return tag("div", join(parts), class_=f"field{bad}", data_field=name)


def text_input(name: str, label: str, value: Any, errors: Errors, help: str | None = None, type: str = "text",
               **attrs: Any) -> Markup:
    control = void("input", type=type, name=name, id=f"f-{name}", value="" if value is None else value, **attrs)
    return _wrap(name, label, control, errors, help)


def textarea(name: str, label: str, value: Any, errors: Errors, help: str | None = None, **attrs: Any) -> Markup:
    control = tag("textarea", "" if value is None else value, name=name, id=f"f-{name}", **attrs)
    return _wrap(name, label, control, errors, help)


def select(name: str, label: str, options: Sequence[tuple[str, str]], value: Any, errors: Errors,
           help: str | None = None, **attrs: Any) -> Markup:
    opts = join(tag("option", text, value=v, selected=str(v) == str(value)) for v, text in options)
    return _wrap(name, label, tag("select", opts, name=name, id=f"f-{name}", **attrs), errors, help)


def checkbox(name: str, label: str, checked: bool, errors: Errors, help: str | None = None, value: str = "on") -> Markup:
    control = void("input", type="checkbox", name=name, id=f"f-{name}", value=value, checked=checked)
    return _wrap(name, label, control, errors, help)


def hidden(name: str, value: Any) -> Markup:
    return void("input", type="hidden", name=name, value=value)


def form(action: str, body: Any, csrf: str, multipart: bool = False, method: str = "post", **attrs: Any) -> Markup:
    """A form; POST forms carry the CSRF token."""
    token = hidden("csrf", csrf) if method == "post" else Markup("")
    return tag("form", join([token, body]), action=action, method=method,
               enctype="multipart/form-data" if multipart else None, **attrs)


def button(action: str, label: str, csrf: str, danger: bool = False, **attrs: Any) -> Markup:
    """A one-button POST form (start, stop, delete): state changes are never links."""
    return form(action, tag("button", label, type="submit", class_="danger" if danger else None, **attrs), csrf,
                class_="inline")


def static_text(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text()


_LAYOUT: Template | None = None


def layout(title: str, body: Any, nav: Sequence[tuple[str, str]], current: str, header: Any = "") -> Markup:
    """The page: `templates/layout.html` with the navigation, a title and the body (all escaped or Markup)."""
    global _LAYOUT
    if _LAYOUT is None:
        _LAYOUT = Template(static_text("templates/layout.html"))
    links = join(tag("a", text, href=href, class_="current" if href == current else None,
                     aria_current="page" if href == current else None) for href, text in nav)
    return Markup(_LAYOUT.substitute(title=esc(title), nav=links, body=esc(body), header=esc(header)))
