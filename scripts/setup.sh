#!/usr/bin/env bash
# taskgate setup: idempotent; installs only what is missing.
#   - Debian packages the integration tests and the demo use (when root with apt)
#   - npm dependencies (npm ci; no install scripts are needed: every native piece is WASM or a prebuilt npm package)
#   - the pinned `opa` and `h2spec` binaries, built from source with the go command into .tools/bin
# Nothing here downloads a prebuilt binary from the internet.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OPA_VERSION=${OPA_VERSION:-v1.22.2}
H2SPEC_VERSION=${H2SPEC_VERSION:-v2.2.1+incompatible}
TOOLS="$ROOT/.tools/bin"
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

# ---- Node -------------------------------------------------------------------
command -v node >/dev/null || die "Node.js >= 20 is required (install it: https://nodejs.org or 'apt-get install nodejs npm')"
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || die "Node.js >= 20 is required, found $(node --version)"

# ---- Debian packages ---------------------------------------------------------
APT_PACKAGES=(postgresql postgresql-client pgbouncer openssh-server openssh-client clickhouse-server clickhouse-client chromium tmux expect)
# kubectl: Debian's kubernetes-client, unless some kubectl is already installed
command -v kubectl >/dev/null || APT_PACKAGES+=(kubernetes-client)
if [ "${TASKGATE_SKIP_APT:-}" != 1 ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # Don't let package scripts start services: tests start their own on loopback ports.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || die "apt-get install failed for: ${missing[*]}"
    rm -f /usr/sbin/policy-rc.d
  else
    say "Debian packages present"
  fi
elif ! command -v pg_ctl >/dev/null && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  say "note: not root or no apt-get: install ${APT_PACKAGES[*]} yourself for the integration tests"
fi

# ---- npm dependencies --------------------------------------------------------
stamp=node_modules/.taskgate-lock-hash
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing npm dependencies (npm install from package-lock.json)"
  # npm ci rejects this lock file (npm omits chdb's per-platform optional packages from it), so install from the lock
  npm install --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
else
  say "npm dependencies up to date"
fi

# ---- opa ----------------------------------------------------------------------
mkdir -p "$TOOLS"
have=$("$TOOLS/opa" version 2>/dev/null | awk '/^Version:/{print "v"$2}' || true)
if [ "$have" != "$OPA_VERSION" ]; then
  command -v go >/dev/null || die "Go is required to build opa $OPA_VERSION: install Go >= 1.23 (https://go.dev/dl or 'apt-get install golang'), then re-run this script"
  say "building opa $OPA_VERSION with go install (first time: about a minute)"
  GOBIN="$TOOLS" GOFLAGS=-mod=mod go install "github.com/open-policy-agent/opa@$OPA_VERSION"
fi
say "opa $("$TOOLS/opa" version | awk '/^Version:/{print $2}') at .tools/bin/opa"

# ---- h2spec -------------------------------------------------------------------
# HTTP/2 conformance tester (test/integration/ext-authz/h2-conformance.test.ts). h2spec has no go.mod, so
# `go install h2spec@tag` would take the newest version of each dependency: it is built instead from a
# throwaway module that pins them (checksums verified as usual). `h2spec --version` does not report the tag,
# so the version is read from the binary with `go version -m`.
h2have=
if [ -x "$TOOLS/h2spec" ]; then
  if command -v go >/dev/null; then
    h2have=$(go version -m "$TOOLS/h2spec" 2>/dev/null | awk '($1=="mod" || $1=="dep") && $2=="github.com/summerwind/h2spec"{print $3}' || true)
  else
    h2have=$H2SPEC_VERSION # cannot tell without go; keep what is there
  fi
fi
if [ "$h2have" != "$H2SPEC_VERSION" ]; then
  command -v go >/dev/null || die "Go is required to build h2spec $H2SPEC_VERSION: install Go >= 1.23 (https://go.dev/dl or 'apt-get install golang'), then re-run this script"
  say "building h2spec $H2SPEC_VERSION with go build (first time: about half a minute)"
  h2tmp=$(mktemp -d)
  cat > "$h2tmp/go.mod" <<MOD
module h2specbuild

go 1.23

require (
	github.com/summerwind/h2spec $H2SPEC_VERSION
	github.com/fatih/color v1.19.0
	github.com/mattn/go-colorable v0.1.14
	github.com/mattn/go-isatty v0.0.20
	github.com/spf13/cobra v1.10.2
	github.com/spf13/pflag v1.0.9
	golang.org/x/net v0.63.0
	golang.org/x/sys v0.50.0
	golang.org/x/text v0.44.0
)
MOD
  printf '//go:build tools\npackage tools\n\nimport _ "github.com/summerwind/h2spec/cmd/h2spec"\n' > "$h2tmp/tools.go"
  (cd "$h2tmp" && GOFLAGS=-mod=mod go mod tidy && go build -o "$TOOLS/h2spec" github.com/summerwind/h2spec/cmd/h2spec) ||
    { rm -rf "$h2tmp"; die "building h2spec $H2SPEC_VERSION failed"; }
  rm -rf "$h2tmp"
fi
say "h2spec $H2SPEC_VERSION at .tools/bin/h2spec"
say "ready"
