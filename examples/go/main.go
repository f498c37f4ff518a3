// A latchkey client in Go (grpc-go): the life of an app password as an
// account portal (an issuer key) and a mail proxy (an authenticator key)
// see it, and what a refused request carries. run.sh generates the
// package from proto/ (protoc-gen-go, protoc-gen-go-grpc) and builds this
// with Debian's Go libraries, offline.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	latchkeyv1 "latchkey.dev/api/latchkey/v1"
)

// as returns a context that sends `key` as the caller's bearer key.
func as(ctx context.Context, key string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
}

// codeNames are the gRPC names of the codes printed here.
var codeNames = map[codes.Code]string{
	codes.InvalidArgument:  "INVALID_ARGUMENT",
	codes.PermissionDenied: "PERMISSION_DENIED",
}

// refused prints a refusal's code, ErrorInfo and BadRequest.
func refused(err error) {
	if err == nil {
		fmt.Println("not refused")
		return
	}
	st := status.Convert(err)
	name, known := codeNames[st.Code()]
	if !known {
		name = strings.ToUpper(st.Code().String())
	}
	fmt.Printf("refused %s\n", name)
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			fmt.Printf("ErrorInfo %s %s\n", d.Domain, d.Reason)
		case *errdetails.BadRequest:
			for _, violation := range d.FieldViolations {
				fmt.Printf("BadRequest %s\n", violation.Field)
			}
		}
	}
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func main() {
	addr := os.Getenv("LATCHKEY_ADDR")
	if addr == "" {
		addr = "127.0.0.1:50051"
	}
	issuer, authenticator := os.Getenv("LATCHKEY_ISSUER_KEY"), os.Getenv("LATCHKEY_AUTHENTICATOR_KEY")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Plain text to a local server; Debian's grpc-go (1.33) predates
	// credentials/insecure, which newer code uses instead.
	conn, err := grpc.Dial(addr, grpc.WithInsecure())
	must(err)
	defer conn.Close()
	passwords := latchkeyv1.NewAppPasswordServiceClient(conn)
	logins := latchkeyv1.NewLegacyAuthServiceClient(conn)

	// The portal, after it verified the user with two factors.
	issued, err := passwords.IssueAppPassword(as(ctx, issuer), &latchkeyv1.IssueAppPasswordRequest{
		Parent:      "accounts/mia@example.com",
		DisplayName: "Thunderbird on the laptop",
		Protocols:   []latchkeyv1.Protocol{latchkeyv1.Protocol_PROTOCOL_IMAP},
	})
	must(err)
	name := issued.GetAppPassword().GetName()
	fmt.Printf("issued %s\n", name)

	// The mail proxy, at every login.
	answer, err := logins.Authenticate(as(ctx, authenticator), &latchkeyv1.AuthenticateRequest{
		Username: "mia@example.com",
		Password: issued.GetSecret(),
		Protocol: latchkeyv1.Protocol_PROTOCOL_IMAP,
		ClientIp: "192.0.2.10",
	})
	must(err)
	fmt.Printf("authenticated %t\n", answer.GetAuthenticated())

	listed, err := passwords.ListAppPasswords(as(ctx, issuer), &latchkeyv1.ListAppPasswordsRequest{
		Parent: "accounts/mia@example.com",
	})
	must(err)
	fmt.Printf("listed %d\n", len(listed.GetAppPasswords()))

	revoked, err := passwords.RevokeAppPassword(as(ctx, issuer), &latchkeyv1.RevokeAppPasswordRequest{
		Name: name, Reason: "laptop sold",
	})
	must(err)
	fmt.Printf("revoked %t\n", revoked.GetRevokeTime().GetSeconds() > 0)

	// A refused request: the details say what to fix, and why.
	_, err = passwords.IssueAppPassword(as(ctx, issuer), &latchkeyv1.IssueAppPasswordRequest{
		Parent: "accounts/mia@example.com",
	})
	refused(err)
	// The wrong role: an authenticator key may not issue.
	_, err = passwords.ListAppPasswords(as(ctx, authenticator), &latchkeyv1.ListAppPasswordsRequest{
		Parent: "accounts/mia@example.com",
	})
	refused(err)
}
