"""Jinja2 rendering with autoescaping always on, and a Content-Security-Policy that pins the one script.

Strings from results files (task names, errors, hyper-parameters) are only ever template variables, so
autoescaping turns markup in them into text. The CSP is a second fence: it allows exactly our inline
script (by hash), inline styles (matplotlib's SVG uses style attributes) and nothing else — no network,
no inline event handlers — so a payload that slipped past escaping still could not run or call out.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).resolve().parent / "templates"


@lru_cache(maxsize=1)
def _environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson_text"] = _tojson_text
    return env


def _tojson_text(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, default=str)


def _asset(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def content_security_policy(script: str) -> str:
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
            f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'")


def render_page(template: str, **context: Any) -> str:
    """A complete, self-contained HTML page: CSS and JS inline, no external references."""
    import markupsafe

    script = _asset("sort.js")
    env = _environment()
    return env.get_template(template).render(
        css=markupsafe.Markup(_asset("report.css")), script=markupsafe.Markup(script),
        csp=content_security_policy(script), svg=markupsafe.Markup, **context)
