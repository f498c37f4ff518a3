#!/usr/bin/env python3
"""A latchkey client in Python (grpcio): the life of an app password as an
account portal (an issuer key) and a mail proxy (an authenticator key) see
it, and what a refused request carries.

    pip install -r examples/python/requirements.txt
    LATCHKEY_ADDR=127.0.0.1:50051 LATCHKEY_ISSUER_KEY=... \
    LATCHKEY_AUTHENTICATOR_KEY=... python3 examples/python/latchkey_example.py

The stubs are generated from proto/ at start, into a temporary directory,
with grpcio-tools' protoc: nothing generated is committed. The error
details (google.rpc.ErrorInfo, BadRequest) come from
googleapis-common-protos, decoded with grpcio-status.
"""

import os
import pathlib
import sys
import tempfile

import grpc
from grpc_status import rpc_status
from grpc_tools import protoc
from google.rpc import error_details_pb2

PROTO = pathlib.Path(__file__).resolve().parents[2] / "proto"


def generate(into):
    """latchkey's stubs, from proto/, into `into` (importable after)."""
    files = sorted(str(p.relative_to(PROTO)) for p in (PROTO / "latchkey" / "v1").glob("*.proto"))
    include = pathlib.Path(protoc.__file__).parent / "_proto"
    status = protoc.main(
        ["protoc", f"-I{PROTO}", f"-I{include}", f"--python_out={into}", f"--grpc_python_out={into}"]
        + files
    )
    if status != 0:
        sys.exit(f"protoc failed ({status})")
    sys.path.insert(0, into)


def details(error):
    """The ErrorInfo and BadRequest a refusal carries, as text."""
    status = rpc_status.from_call(error)
    said = []
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            said.append(f"ErrorInfo {info.domain} {info.reason}")
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            for violation in bad.field_violations:
                said.append(f"BadRequest {violation.field}")
    return said


def main():
    addr = os.environ.get("LATCHKEY_ADDR", "127.0.0.1:50051")
    issuer = [("authorization", "Bearer " + os.environ["LATCHKEY_ISSUER_KEY"])]
    authenticator = [("authorization", "Bearer " + os.environ["LATCHKEY_AUTHENTICATOR_KEY"])]
    with tempfile.TemporaryDirectory() as generated:
        generate(generated)
        from latchkey.v1 import app_password_pb2 as ap
        from latchkey.v1 import app_password_pb2_grpc as ap_grpc
        from latchkey.v1 import legacy_auth_pb2 as auth
        from latchkey.v1 import legacy_auth_pb2_grpc as auth_grpc
        from latchkey.v1 import protocol_pb2

        channel = grpc.insecure_channel(addr)
        passwords = ap_grpc.AppPasswordServiceStub(channel)
        logins = auth_grpc.LegacyAuthServiceStub(channel)

        # The portal, after it verified the user with two factors.
        issued = passwords.IssueAppPassword(
            ap.IssueAppPasswordRequest(
                parent="accounts/mia@example.com",
                display_name="Thunderbird on the laptop",
                protocols=[protocol_pb2.PROTOCOL_IMAP],
            ),
            metadata=issuer,
        )
        name = issued.app_password.name
        print(f"issued {name}")

        # The mail proxy, at every login.
        answer = logins.Authenticate(
            auth.AuthenticateRequest(
                username="mia@example.com",
                password=issued.secret,
                protocol=protocol_pb2.PROTOCOL_IMAP,
                client_ip="192.0.2.10",
            ),
            metadata=authenticator,
        )
        print(f"authenticated {str(answer.authenticated).lower()}")

        listed = passwords.ListAppPasswords(
            ap.ListAppPasswordsRequest(parent="accounts/mia@example.com"), metadata=issuer
        )
        print(f"listed {len(listed.app_passwords)}")

        revoked = passwords.RevokeAppPassword(
            ap.RevokeAppPasswordRequest(name=name, reason="laptop sold"), metadata=issuer
        )
        print(f"revoked {str(revoked.revoke_time.seconds > 0).lower()}")

        # A refused request: the details say what to fix, and why.
        try:
            passwords.IssueAppPassword(
                ap.IssueAppPasswordRequest(parent="accounts/mia@example.com", display_name=""),
                metadata=issuer,
            )
        except grpc.RpcError as error:
            print(f"refused {error.code().name}")
            for line in details(error):
                print(line)
        # The wrong role: an authenticator key may not issue.
        try:
            passwords.ListAppPasswords(
                ap.ListAppPasswordsRequest(parent="accounts/mia@example.com"),
                metadata=authenticator,
            )
        except grpc.RpcError as error:
            print(f"refused {error.code().name}")
            for line in details(error):
                print(line)


if __name__ == "__main__":
    main()
