#!/usr/bin/env bash
# Generates latchkey's Go package from proto/ and builds and runs main.go,
# offline: protoc, protoc-gen-go, protoc-gen-go-grpc and the Go libraries
# from Debian's packages (the list is GO_PACKAGES in .ci/run; among them
# golang-github-golang-protobuf-1-5-dev: grpc-go's codec must be the
# protobuf v1.5 shim, which reads protoc-gen-go 1.28's code; 1.3 cannot),
# in GOPATH mode, since no Go module proxy is reachable here. With a
# module proxy, `go mod init` and `go get` serve as well; the generation
# is the same.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
proto="$here/../../proto"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src/example"
protoc -I "$proto" --go_out="$work/src" --go_opt=paths=import \
    --go-grpc_out="$work/src" --go-grpc_opt=paths=import \
    "$proto"/latchkey/v1/*.proto
cp "$here/main.go" "$work/src/example/"
cd "$work/src/example"
GO111MODULE=off GOPATH="$work:/usr/share/gocode" GOCACHE="$work/cache" GOFLAGS= \
    go build -o "$work/example" .
"$work/example"
