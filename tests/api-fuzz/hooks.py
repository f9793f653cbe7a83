"""Schemathesis hooks: aim generated requests at a real workspace and artifact, so fuzzing
reaches the handlers instead of stopping at 404 for random ids. Values that links supply in
the stateful phase are left alone: schemathesis maps only what it generated."""
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

