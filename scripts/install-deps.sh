#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine, as root: the
# Debian packages below, when missing, and the Go modules (go mod download).
# Cheap when everything is there; scripts/test.sh and .ci/run both call it.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: gcc for the race detector (cgo); iproute2
# and iptables for the testbed's network-namespace hosts and faults; nginx as
# the unmodified legacy server (testbed, agent); etcd-server for the etcd
# registry's tests against a real etcd; haproxy (and nginx) as the proxy
# load balancers the benchmark compares against; vsftpd as the unmodified
# FTP mirror of the download package's tests; openssh-server (sshd) and
# openssh-client (ssh, ssh-keygen) as the unmodified login servers and the
# system client of `smartclient shell`'s tests.
# Only missing ones are installed (as root), so a prepared machine starts at once.
need=()
for pkg in gcc iproute2 iptables nginx haproxy etcd-server vsftpd openssh-server openssh-client; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Installing nginx, haproxy, etcd-server, vsftpd or openssh-server would
  # start them as system services; the tests start their own on free ports.
  # A policy-rc.d that says "no" keeps the packages from starting daemons
  # (and from failing where no init system runs); it is removed again if we
  # made it.
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  trap '[ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi


go mod download
