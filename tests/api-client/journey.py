"""A first journey through the API with a client generated from /openapi.json, as an API user
would generate it: register, verify the address from the e-mail, log in, create a workspace,
add a member, then create, search, update (If-Match) and delete an artifact.

scripts/ci/security.sh generates the `ghostworks_client` package from the running server's
document and runs this against it: journey.py API_URL MAIL_URL (the SMTP sink's JSON listing).
"""
import json
import sys
import time
import urllib.parse
import urllib.request
import uuid

from ghostworks_client import AuthenticatedClient, Client
from ghostworks_client.api.artifacts import (
    artifacts_create,
    artifacts_delete,
    artifacts_get,
    artifacts_patch,
    artifacts_search,
)
from ghostworks_client.api.auth import auth_login, auth_register, auth_verify_email
from ghostworks_client.api.workspaces import workspaces_add_member, workspaces_create
from ghostworks_client.models import (
    AddMemberInput,
    ArtifactInput,
    ArtifactOut,
    ArtifactPage,
    ArtifactPatchInput,
    ErrorBody,
    LoginInput,
    MemberInvited,
    RegisterInput,
    Role,
    TokenOut,
    WorkspaceInput,
    WorkspaceOut,
)

PASSWORD = "Journey-2026!"


def expect(response, status, model=None):
    """The parsed body of `response`, which must have `status` (and parse as `model`)."""
    if response.status_code != status:
        sys.exit(f"expected {status}, got {int(response.status_code)}: {response.content[:500]!r}")
    if model is not None and not isinstance(response.parsed, model):
        sys.exit(f"{status} body is not a {model.__name__}: {response.content[:500]!r}")
    return response.parsed


def verification_token(mail_url, address):
    """The token of the verification link e-mailed to `address` (the worker sends it)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with urllib.request.urlopen(mail_url, timeout=5) as r:
            messages = json.load(r)
        for m in messages:
            if any(address.lower() == t.lower() for t in m["to"]):
                for link in m["links"]:
                    query = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)
                    if "verification_token" in query:
                        return query["verification_token"][0]
        time.sleep(0.5)
    sys.exit(f"no verification e-mail reached {address} within 30 s")


def main(base, mail_url):
    run = uuid.uuid4().hex[:10]
    alice, bob = f"alice-{run}@example.com", f"bob-{run}@example.com"
    anonymous = Client(base_url=base)

    for address in (alice, bob):
        expect(auth_register.sync_detailed(client=anonymous, body=RegisterInput(email=address, password=PASSWORD)), 202)
    token = verification_token(mail_url, alice)
    expect(auth_verify_email.sync_detailed(client=anonymous, verification_token=token), 200)
    tokens = expect(auth_login.sync_detailed(client=anonymous, body=LoginInput(email=alice, password=PASSWORD)), 200, TokenOut)
    client = AuthenticatedClient(base_url=base, token=tokens.access_token)

    ws = expect(
        workspaces_create.sync_detailed(client=client, body=WorkspaceInput(name=f"Journey {run}", slug=f"journey-{run}")),
        201,
        WorkspaceOut,
    )
    added = expect(
        workspaces_add_member.sync_detailed(ws.id, client=client, body=AddMemberInput(email=bob, role=Role.MEMBER)),
        202,
        MemberInvited,
    )
    assert added.email == bob, added

    created = artifacts_create.sync_detailed(
        ws.id, client=client, body=ArtifactInput(name=f"Journey report {run}", tags=["Journey", "report"])
    )
    art = expect(created, 201, ArtifactOut)
    assert art.tags == ["journey", "report"], art.tags
    etag = created.headers["etag"]
    assert etag == f'"{art.version}"', etag

    page = expect(artifacts_search.sync_detailed(ws.id, client=client, q=f"report {run}"), 200, ArtifactPage)
    assert [a.id for a in page.items] == [art.id], page

    patched = artifacts_patch.sync_detailed(
        ws.id, art.id, client=client, body=ArtifactPatchInput(description="Checked by the journey"), if_match=etag
    )
    updated = expect(patched, 200, ArtifactOut)
    assert updated.version == art.version + 1 and updated.description == "Checked by the journey", updated
    stale = artifacts_patch.sync_detailed(
        ws.id, art.id, client=client, body=ArtifactPatchInput(name="lost update"), if_match=etag
    )
    refused = expect(stale, 412, ErrorBody)
    assert refused.error == "precondition_failed", refused

    expect(artifacts_delete.sync_detailed(ws.id, art.id, client=client, if_match=patched.headers["etag"]), 204)
    gone = expect(artifacts_get.sync_detailed(ws.id, art.id, client=client), 404, ErrorBody)
    assert gone.error == "not_found", gone
    print("generated client journey: register, verify, log in, workspace, member, create, search, update, delete: passed")


if __name__ == "__main__":
    main(*sys.argv[1:3])
