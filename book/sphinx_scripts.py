"""A Sphinx extension of the book's: every script a page loads, loaded once.

sphinx-thebe 0.3.1 adds its inline configuration (``const THEBE_JS_URL = ...``) each time Sphinx is about to read
the documents, which happens twice in a Jupyter Book 1.0 build (measured: two copies in every page). The second
``const`` is a JavaScript error in every reader's console. This drops a script that a page already loads, keeping
the first, so each page declares each name once.
"""

from __future__ import annotations

from typing import Any


def _key(script: Any) -> tuple:
    """What makes two script entries the same: the file and the attributes, body included. An inline script's file
    is None or "" depending on how it was added (the same script appears once with each)."""
    attributes = getattr(script, "attributes", None) or {}
    return (getattr(script, "filename", str(script)) or "",
            tuple(sorted((k, str(v)) for k, v in attributes.items())))


def unique_scripts(app, pagename: str, templatename: str, context: dict, doctree) -> None:
    """``html-page-context``: the page's scripts without repeats, in their order."""
    seen: set[tuple] = set()
    scripts = []
    for script in context.get("script_files", []):
        if _key(script) not in seen:
            seen.add(_key(script))
            scripts.append(script)
    context["script_files"] = scripts


def setup(app) -> dict[str, Any]:
    app.connect("html-page-context", unique_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
