#!/usr/bin/env bash
# Docker Engine beside podman, for tests: Debian's docker.io, its dockerd on a socket of its own (never
# /var/run/docker.sock, so nothing else on the host finds it by accident), with the two base images loaded.
#   bash scripts/docker-engine.sh start   → prints DOCKER_HOST=unix:///run/tmax-docker.sock
#   bash scripts/docker-engine.sh stop
# iptables stays on (Docker's bridges are NATed as on a user's machine; DOCKER-USER is where the host guard hooks
# in). dockerd 20.10 sets the FORWARD policy to DROP when it has to turn on IP forwarding; the policy it found is
# put back so podman's bridges keep working. Root only.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
socket=/run/tmax-docker.sock
pidfile=/run/tmax-docker.pid
say() { printf 'docker-engine: %s\n' "$*" >&2; }
ping() { curl -sf --unix-socket "$socket" http://d/_ping >/dev/null 2>&1; }

stop() {
  [ -f "$pidfile" ] || return 0
  local pid; pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  say "stopped dockerd ($pid)"
}

start() {
  if ping; then say "dockerd already answers on $socket"; echo "DOCKER_HOST=unix://$socket"; return 0; fi
  if ! command -v dockerd >/dev/null; then
    say "installing docker.io"
    # the package must not start its own service (on /var/run/docker.sock): no service starts during the install
    local policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; policy=1; fi
    apt-get install -y -q --no-install-recommends docker.io >/dev/null \
      || { apt-get update -q && apt-get install -y -q --no-install-recommends docker.io >/dev/null; }
    [ -n "$policy" ] && rm -f /usr/sbin/policy-rc.d
  fi
  local forward; forward=$(iptables -S FORWARD 2>/dev/null | sed -n 's/^-P FORWARD //p')
  mkdir -p /var/lib/tmax-docker /run/tmax-docker
  nohup dockerd -H "unix://$socket" --data-root /var/lib/tmax-docker --exec-root /run/tmax-docker --pidfile "$pidfile" \
    --exec-opt native.cgroupdriver=cgroupfs >/var/log/tmax-dockerd.log 2>&1 &
  for _ in $(seq 150); do ping && break; sleep 0.2; done
  ping || { say "dockerd did not answer on $socket; see /var/log/tmax-dockerd.log"; tail -5 /var/log/tmax-dockerd.log >&2; exit 1; }
  if [ -n "$forward" ] && [ "$(iptables -S FORWARD | sed -n 's/^-P FORWARD //p')" != "$forward" ]; then
    iptables -P FORWARD "$forward"
    say "FORWARD policy put back to $forward"
  fi
  # the base images: copied from podman when it has them, else built through this engine by `tmax setup`
  local images=(localhost/tmax-base:bookworm localhost/tb-base:bookworm) missing=()
  for i in "${images[@]}"; do docker -H "unix://$socket" image inspect "$i" >/dev/null 2>&1 || missing+=("$i"); done
  if [ ${#missing[@]} -gt 0 ]; then
    if command -v podman >/dev/null && podman image exists "${missing[0]}"; then
      say "loading ${missing[*]} from podman"
      podman save --format docker-archive -m "${missing[@]}" | docker -H "unix://$socket" load >/dev/null
    else
      DOCKER_HOST="unix://$socket" node "$(dirname "$0")/../dist/cli/main.js" setup
    fi
  fi
  say "ready: DOCKER_HOST=unix://$socket"
  echo "DOCKER_HOST=unix://$socket"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
