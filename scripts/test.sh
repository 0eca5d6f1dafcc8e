#!/usr/bin/env bash
# Runs the test suite: policy tests (opa test + decision tables against the
# compiled WASM bundle), then unit and integration tests with node's test runner.
#   scripts/test.sh            everything
#   scripts/test.sh unit       unit tests only
#   scripts/test.sh integration
#   scripts/test.sh path/to/file.test.ts ...
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$(pwd)/.tools/bin:$PATH"
what=${1:-all}
files=()
case "$what" in
  unit) mapfile -t files < <(find test/unit -name '*.test.ts' | sort) ;;
  integration) mapfile -t files < <(find test/integration -name '*.test.ts' | sort) ;;
  all)
    echo "== typecheck"
    npx --no-install tsc -p tsconfig.json
    echo "== policies: taskgate test policies/"
    node bin/taskgate.js test policies
    mapfile -t files < <(find test/unit test/integration -name '*.test.ts' | sort) ;;
  *) files=("$@") ;;
esac
echo "== node --test (${#files[@]} files)"
exec node --import tsx --test --test-concurrency="${TEST_CONCURRENCY:-2}" --test-timeout="${TEST_TIMEOUT_MS:-300000}" "${files[@]}"
