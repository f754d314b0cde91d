#!/usr/bin/env bash
# tmax sandbox set-up for Debian 12 hosts without a container registry.
# Installs rootful podman (runc, cgroupfs, file events), starts its Docker-compatible API socket and
# builds two local base images from Debian's mirror:
#   localhost/tmax-base:bookworm   minimal Debian 12 (default image of `tmax run`)
#   localhost/tb-base:bookworm     + python3/pytest/procps, what the offline Terminal-Bench tasks use
# Safe to run again: every step checks first. Env: TMAX_SOCKET (default /run/podman/podman.sock).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
socket=${TMAX_SOCKET:-/run/podman/podman.sock}
say() { printf 'tmax setup: %s\n' "$*" >&2; }

need_pkgs=()
for bin in podman runc mmdebstrap curl; do command -v "$bin" >/dev/null || need_pkgs+=("$bin"); done
# aardvark-dns: service names resolve on the private networks of multi-container (compose) tasks
[ -x /usr/lib/podman/aardvark-dns ] || need_pkgs+=(aardvark-dns)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  say "installing podman and friends (missing: ${need_pkgs[*]})"
  pkgs=(podman runc netavark aardvark-dns iptables mmdebstrap ca-certificates curl)
  compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null || apt-get update -q
  # stale package lists make the install fail: refresh them once and try again
  apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null \
    || { apt-get update -q && apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null; }
fi

# Engine settings that work on hosts without systemd and without CAP_SYS_RESOURCE:
# - the default rlimits (1048576) cannot be raised here, so pin them to what the host allows;
# - crun refuses hybrid cgroup hierarchies, runc does not;
# - without a delay, every API exec leaves a conmon process behind for minutes.
hard_nofile=$(ulimit -Hn)
mkdir -p /etc/containers
cat > /etc/containers/containers.conf <<CONF
[containers]
default_ulimits = ["nofile=${hard_nofile}:${hard_nofile}", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
exit_command_delay = 10
[network]
network_backend = "netavark"
CONF

# Test-only stand-in for a container registry (Debian's docker-registry, started by the tests on 127.0.0.1 only;
# its own service is not started here) and podman told to speak plain HTTP to it on the ports the tests use.
if ! command -v docker-registry >/dev/null; then
  say "installing docker-registry (local registry stand-in for the tests)"
  apt-get install -y -q --no-install-recommends docker-registry >/dev/null \
    || { apt-get update -q && apt-get install -y -q --no-install-recommends docker-registry >/dev/null; } \
    || say "warning: docker-registry could not be installed; the registry tests will skip with a message"
fi
mkdir -p /etc/containers/registries.conf.d
cat > /etc/containers/registries.conf.d/50-tmax-test-registry.conf <<'CONF'
# tmax tests: a docker-registry stand-in on 127.0.0.1 (plain HTTP). Written by scripts/setup-sandbox.sh.
[[registry]]
location = "127.0.0.1:5055"
insecure = true
[[registry]]
location = "localhost:5055"
insecure = true
[[registry]]
location = "127.0.0.1:5056"
insecure = true
CONF

if ! podman image exists localhost/tmax-base:bookworm; then
  say "building localhost/tmax-base:bookworm from deb.debian.org (minbase)"
  mmdebstrap --quiet --variant=minbase bookworm - http://deb.debian.org/debian \
    | podman import --change 'CMD=["/bin/bash"]' - localhost/tmax-base:bookworm >/dev/null
fi
if ! podman image exists localhost/tb-base:bookworm; then
  say "building localhost/tb-base:bookworm"
  ctx=$(mktemp -d)
  printf '%s\n' 'FROM localhost/tmax-base:bookworm' \
    'RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-pytest python-is-python3 procps ca-certificates && rm -rf /var/lib/apt/lists/*' \
    >"$ctx/Dockerfile"
  podman build -q -t localhost/tb-base:bookworm "$ctx" >/dev/null
  rm -rf "$ctx"
fi

if ! curl -sf --unix-socket "$socket" http://d/_ping >/dev/null 2>&1; then
  say "starting the podman API service on $socket"
  mkdir -p "$(dirname "$socket")"
  nohup podman system service --time=0 "unix://$socket" >"${socket%.sock}-service.log" 2>&1 &
  for _ in $(seq 100); do curl -sf --unix-socket "$socket" http://d/_ping >/dev/null 2>&1 && break; sleep 0.1; done
  curl -sf --unix-socket "$socket" http://d/_ping >/dev/null || { say "the API socket did not come up"; exit 1; }
fi
podman run --rm --network none localhost/tb-base:bookworm python3 -c 'import pytest' \
  || { say "a test container could not run"; exit 1; }

# The host guard: a firewall chain that stops containers on podman's bridges from opening connections to this
# host (a model server or database on 0.0.0.0 would otherwise be reachable through the gateway). Idempotent;
# TMAX_HOST_GUARD=0 leaves the firewall alone. tmax also installs it before its first bridge sandbox.
if [ "${TMAX_HOST_GUARD:-auto}" != "0" ]; then
  cli="$(cd "$(dirname "$0")/.." && pwd)/dist/cli/main.js"
  if [ -f "$cli" ]; then
    node "$cli" sandbox guard >&2 || say "warning: the host guard could not be installed (see docs/security.md)"
  else
    say "warning: $cli not built; run npm run build, then: tmax sandbox guard"
  fi
fi
say "ready: DOCKER_HOST=unix://$socket"
