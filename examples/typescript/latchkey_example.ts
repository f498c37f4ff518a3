// A latchkey client in TypeScript (@grpc/grpc-js): the life of an app
// password as an account portal (an issuer key) and a mail proxy (an
// authenticator key) see it, and what a refused request carries.
//
//   cd examples/typescript && npm ci
//   LATCHKEY_ADDR=127.0.0.1:50051 LATCHKEY_ISSUER_KEY=... \
//   LATCHKEY_AUTHENTICATOR_KEY=... npm start
//
// The protos are loaded from proto/ at run time (@grpc/proto-loader):
// nothing is generated. The error details travel in the
// `grpc-status-details-bin` trailer as a google.rpc.Status; the three
// messages read here are declared below, as google/rpc/status.proto and
// error_details.proto define them.

import * as grpc from "@grpc/grpc-js";
import * as loader from "@grpc/proto-loader";
import protobuf from "protobufjs";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const proto = path.resolve(here, "../../proto");

const definition = loader.loadSync(
  ["latchkey/v1/app_password.proto", "latchkey/v1/legacy_auth.proto"],
  { includeDirs: [proto], keepCase: true, longs: String, enums: String, defaults: true },
);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const api = grpc.loadPackageDefinition(definition) as any;

// google.rpc.Status, ErrorInfo and BadRequest, by their field numbers.
const rpc = protobuf.Root.fromJSON({
  nested: {
    google: {
      nested: {
        protobuf: { nested: { Any: { fields: { type_url: { type: "string", id: 1 }, value: { type: "bytes", id: 2 } } } } },
        rpc: {
          nested: {
            Status: {
              fields: {
                code: { type: "int32", id: 1 },
                message: { type: "string", id: 2 },
                details: { rule: "repeated", type: "google.protobuf.Any", id: 3 },
              },
            },
            ErrorInfo: {
              fields: {
                reason: { type: "string", id: 1 },
                domain: { type: "string", id: 2 },
              },
            },
            BadRequest: {
              fields: { field_violations: { rule: "repeated", type: "FieldViolation", id: 1 } },
              nested: {
                FieldViolation: {
                  fields: { field: { type: "string", id: 1 }, description: { type: "string", id: 2 } },
                },
              },
            },
          },
        },
      },
    },
  },
});

/** The ErrorInfo and BadRequest a refusal carries, as lines. */
function details(error: grpc.ServiceError): string[] {
  const raw = error.metadata.get("grpc-status-details-bin")[0];
  if (!raw) return [];
  const status = rpc.lookupType("google.rpc.Status").decode(raw as Buffer) as unknown as {
    details: { type_url: string; value: Uint8Array }[];
  };
  const said: string[] = [];
  for (const detail of status.details) {
    if (detail.type_url.endsWith("/google.rpc.ErrorInfo")) {
      const info = rpc.lookupType("google.rpc.ErrorInfo").decode(detail.value) as unknown as {
        domain: string;
        reason: string;
      };
      said.push(`ErrorInfo ${info.domain} ${info.reason}`);
    } else if (detail.type_url.endsWith("/google.rpc.BadRequest")) {
      const bad = rpc.lookupType("google.rpc.BadRequest").decode(detail.value) as unknown as {
        field_violations: { field: string }[];
      };
      for (const violation of bad.field_violations) said.push(`BadRequest ${violation.field}`);
    }
  }
  return said;
}

/** A unary call as a promise. */
function call<T>(client: grpc.Client, method: string, request: object, key: string): Promise<T> {
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${key}`);
  return new Promise((resolve, reject) => {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    (client as any)[method](request, metadata, (error: grpc.ServiceError | null, answer: T) =>
      error ? reject(error) : resolve(answer),
    );
  });
}

async function refused(attempt: Promise<unknown>): Promise<void> {
  try {
    await attempt;
    console.log("not refused");
  } catch (error) {
    const failure = error as grpc.ServiceError;
    console.log(`refused ${grpc.status[failure.code]}`);
    for (const line of details(failure)) console.log(line);
  }
}

async function main(): Promise<void> {
  const addr = process.env.LATCHKEY_ADDR ?? "127.0.0.1:50051";
  const issuer = process.env.LATCHKEY_ISSUER_KEY!;
  const authenticator = process.env.LATCHKEY_AUTHENTICATOR_KEY!;
  const insecure = grpc.credentials.createInsecure();
  const passwords = new api.latchkey.v1.AppPasswordService(addr, insecure);
  const logins = new api.latchkey.v1.LegacyAuthService(addr, insecure);

  // The portal, after it verified the user with two factors.
  const issued = await call<{ app_password: { name: string }; secret: string }>(
    passwords,
    "IssueAppPassword",
    {
      parent: "accounts/mia@example.com",
      display_name: "Thunderbird on the laptop",
      protocols: ["PROTOCOL_IMAP"],
    },
    issuer,
  );
  const name = issued.app_password.name;
  console.log(`issued ${name}`);

  // The mail proxy, at every login.
  const answer = await call<{ authenticated: boolean }>(
    logins,
    "Authenticate",
    {
      username: "mia@example.com",
      password: issued.secret,
      protocol: "PROTOCOL_IMAP",
      client_ip: "192.0.2.10",
    },
    authenticator,
  );
  console.log(`authenticated ${answer.authenticated}`);

  const listed = await call<{ app_passwords: unknown[] }>(
    passwords,
    "ListAppPasswords",
    { parent: "accounts/mia@example.com" },
    issuer,
  );
  console.log(`listed ${listed.app_passwords.length}`);

  const revoked = await call<{ revoke_time: { seconds: string } | null }>(
    passwords,
    "RevokeAppPassword",
    { name, reason: "laptop sold" },
    issuer,
  );
  console.log(`revoked ${Number(revoked.revoke_time?.seconds ?? 0) > 0}`);

  // A refused request: the details say what to fix, and why.
  await refused(
    call(passwords, "IssueAppPassword", { parent: "accounts/mia@example.com", display_name: "" }, issuer),
  );
  // The wrong role: an authenticator key may not issue.
  await refused(
    call(passwords, "ListAppPasswords", { parent: "accounts/mia@example.com" }, authenticator),
  );
  passwords.close();
  logins.close();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
