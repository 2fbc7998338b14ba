#!/usr/bin/env bash
# The README's test command: installs what is missing, static checks, every
# test with the race detector, then the failure suite on network namespaces
# (root). Run from anywhere; it works on the repository it lives in.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests need: Debian packages (when missing) and Go modules.
bash scripts/install-deps.sh

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:" $unformatted >&2
  exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test -race (all but the benchmark suite; the testbed's namespace tests need root)"
go test -race -count=1 -timeout 20m $(go list ./... | grep -v '/bench$') "$@"

# The benchmark suite's quick mode starts 32 proxy processes, HAProxy and
# nginx and counts replies within a deadline: beside the other packages'
# tests on 2 cores it once starved its proxies of every reply. It runs alone.
echo "== benchmark suite, quick mode (alone)"
go test -race -count=1 -timeout 10m ./bench

echo "== failure suite (network namespaces, as root; no -race: it measures timing)"
go test -tags failsuite -run TestFailureSuite -count=1 -v -timeout 10m ./failsuite
