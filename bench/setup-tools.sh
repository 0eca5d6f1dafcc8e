#!/usr/bin/env bash
# Installs the benchmark tools into .tools/bin (not part of scripts/setup.sh):
#   ghz v0.93.0                       gRPC load generator
#   opa-envoy-plugin v1.0.0-envoy     the baseline ext_authz server (OPA + Envoy plugin)
#   echo-latency                      bench/echo-latency: a TCP echo round trip at a fixed rate
#                                     (the machine's own latency floor; standard library only)
# The Go module proxy here serves opa-envoy-plugin@v1.0.0-envoy but not its
# version list (403) nor its checksum-database entry (404), so `go install
# ...@version` fails; it is built from a throwaway module that requires it,
# with GONOSUMDB for that one module (its dependencies are still verified).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(pwd)/.tools/bin"
mkdir -p "$BIN"
if [[ ! -x "$BIN/ghz" ]]; then
  GOBIN="$BIN" go install github.com/bojand/ghz/cmd/ghz@v0.93.0
fi
if [[ ! -x "$BIN/opa-envoy-plugin" ]]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  cat > "$tmp/go.mod" <<'MOD'
module oepbuild

go 1.23

require github.com/open-policy-agent/opa-envoy-plugin v1.0.0-envoy
MOD
  printf '//go:build tools\npackage tools\n\nimport _ "github.com/open-policy-agent/opa-envoy-plugin/cmd/opa-envoy-plugin"\n' > "$tmp/tools.go"
  (cd "$tmp" && GONOSUMDB=github.com/open-policy-agent/opa-envoy-plugin go mod tidy &&
    go build -o "$BIN/opa-envoy-plugin" github.com/open-policy-agent/opa-envoy-plugin/cmd/opa-envoy-plugin)
fi
# Rebuilt every time: it is small (about a second) and its source is in this repository.
(cd bench/echo-latency && go build -o "$BIN/echo-latency" .)
"$BIN/opa-envoy-plugin" version | head -1
echo "ghz, opa-envoy-plugin and echo-latency are in $BIN"
