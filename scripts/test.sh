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

echo "== go test -race"
# The testbed's own tests run on their own afterwards: twice in clean-clone
# runs its fault tests saw a host misbehave while other packages' tests were
# setting up and tearing down network-namespace hosts at the same moment
# (cause not yet found; see README, Status).
go test -race -count=1 -timeout 20m $(go list ./... | grep -v '/testbed$') "$@"

echo "== testbed (network namespaces, as root; alone)"
go test -race -count=1 -timeout 5m ./testbed

echo "== failure suite (network namespaces, as root; no -race: it measures timing)"
go test -tags failsuite -run TestFailureSuite -count=1 -v -timeout 10m ./failsuite
