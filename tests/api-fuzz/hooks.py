"""Schemathesis hooks.

- Generated requests are aimed at a real workspace and artifact of the demo data, so fuzzing
  reaches the handlers instead of stopping at 404 for random ids (values that come from links
  in the stateful phase are left alone: schemathesis only maps what it generated).
- Two rules of the artifact listing span two parameters, which a JSON schema cannot say:
  `sort=relevance` ranks full-text matches, so it needs `search_mode=fulltext` and `q`, and
  `created_after` must not be later than `created_before`. Generated queries are made to obey
  them; whatever else they get wrong stays wrong.
"""
import datetime
import os

import schemathesis

REAL = {
    "workspace_id": os.environ.get("GW_WORKSPACE_ID"),
    "artifact_id": os.environ.get("GW_ARTIFACT_ID"),
}


@schemathesis.hook
def map_path_parameters(ctx, path_parameters):
    if path_parameters:
        for name, value in REAL.items():
            if value and name in path_parameters:
                path_parameters[name] = value
    return path_parameters


def _moment(value):
    """The instant a query's time bound names, as the server reads it (None if unreadable)."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None


@schemathesis.hook
def map_query(ctx, query):
    if not query or not ctx.operation.path.endswith(("/artifacts", "/search/advanced")):
        return query
    if query.get("sort") == "relevance":
        query["search_mode"] = "fulltext"
        if not str(query.get("q") or "").strip():
            query["q"] = "report"
    after, before = _moment(query.get("created_after")), _moment(query.get("created_before"))
    if after and before:
        # Dates compare as their first instant; give both a zone so they compare at all.
        after, before = (m if m.tzinfo else m.replace(tzinfo=datetime.timezone.utc) for m in (after, before))
        if after > before:
            query["created_after"], query["created_before"] = query["created_before"], query["created_after"]
    return query
