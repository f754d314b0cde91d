#!/usr/bin/env bash
# The Docker Engine subset of the engine tests (`npm run test:e2e:docker`): Debian's dockerd on a socket of its own
# (scripts/docker-engine.sh; root), then the sandbox contract, sandbox, host guard, base images (tmax setup's pull
# route) and one real TB2 task's oracle=1/nop=0 pair with DOCKER_HOST at dockerd, then the leak check over both
# engines. dockerd is stopped afterwards, whatever happened.
set -uo pipefail
cd "$(dirname "$0")/.."
docker_host=$(bash scripts/docker-engine.sh start | sed -n 's/^DOCKER_HOST=//p')
[ -n "$docker_host" ] || { echo "test:e2e:docker: dockerd did not start" >&2; exit 1; }
trap 'bash scripts/docker-engine.sh stop' EXIT
export DOCKER_HOST="$docker_host" TMAX_TEST_RUN="docker-$(hostname)-$$-$(date +%s)" TMAX_TEST_TB2_TASKS="${TMAX_TEST_TB2_TASKS:-sqlite-db-truncate}"
export TMAX_LEAK_CHECK_ENGINES="$docker_host unix:///run/podman/podman.sock"
s=0
node --import tsx --test --test-concurrency=2 --test-timeout=900000 test/e2e/sandbox/docker/contract.test.ts \
  test/e2e/sandbox/sandbox.test.ts test/e2e/sandbox/docker/host-guard.test.ts test/e2e/sandbox/docker/base-images.test.ts || s=1
node --import tsx --test --test-timeout=900000 --test-name-pattern "oracle -k 2 scores" test/e2e/jobs/eval.test.ts || s=1
node --import tsx scripts/leak-check.ts || s=1
exit $s
