// Where the test suite finds optional things (the shared TB2 tasks, the container engine), and how it skips.
import { existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import http from "node:http";
import { processStartTime } from "../../src/util/process.js";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const EXAMPLES = path.join(ROOT, "examples/tasks");

/** Real Terminal-Bench 2 tasks adapted for offline use; present for developers and CI, not in a user's clone. */
export const SHARED_TASKS = process.env.TMAX_SHARED_TASKS ?? path.resolve(ROOT, "../shared/tasks/tb2-offline");
export const sharedTasksPresent = existsSync(SHARED_TASKS);
export const SHARED_SKIP = sharedTasksPresent ? false : `skipped: ${SHARED_TASKS} not found (shared TB2 tasks are not part of a fresh clone)`;
if (!sharedTasksPresent) console.log(`# ${SHARED_SKIP}`);

// Tests never pull from public registries (the TB2 tasks name Docker Hub images): a task's docker_image is used only
// when already local, else its Dockerfile is built. Tests of pulling set their own policy against a local registry.
process.env.TMAX_PULL ??= "never";
/**
 * This test run's id, labelled on every container the backends create (io.tmax.test-run) and inherited by
 * the CLIs the tests spawn: the engine is shared, so the suite counts and prunes only its own containers.
 * `node --test` runs each file in a child of one runner process, so the runner (pid + start time) names the run.
 */
process.env.TMAX_TEST_RUN ??= `${os.hostname()}-${process.ppid}-${processStartTime(process.ppid) ?? "0"}`;
// each test file (a process of its own) gets its own id under the run's (`<run>.<pid>`): files may run side by
// side, and each counts only its own containers; the leak check after the suite takes every id under the run's
if (!process.env.TMAX_TEST_FILE_RUN) {
  process.env.TMAX_TEST_RUN = `${process.env.TMAX_TEST_RUN}.${process.pid}`;
  process.env.TMAX_TEST_FILE_RUN = "1";
}
export const TEST_RUN = process.env.TMAX_TEST_RUN;

export const DOCKER_HOST = process.env.DOCKER_HOST ?? "unix:///run/podman/podman.sock";

/** True when the Docker-compatible API answers /_ping. */
export async function engineAvailable(): Promise<boolean> {
  if (!DOCKER_HOST.startsWith("unix://")) return true;
  const socketPath = DOCKER_HOST.slice("unix://".length);
  return new Promise((resolve) => {
    const req = http.get({ socketPath, path: "/_ping", timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("error", () => resolve(false));
    req.on("timeout", () => {
      req.destroy();
      resolve(false);
    });
  });
}

/** `skip` option for tests that need the container engine: a visible reason, never a silent pass. */
export const ENGINE_SKIP: string | false = (await engineAvailable())
  ? false
  : `skipped: no container engine at ${DOCKER_HOST} (run \`npm run setup\`)`;
if (ENGINE_SKIP) console.log(`# ${ENGINE_SKIP}`);

export const BASE_IMAGE = "localhost/tmax-base:bookworm";
export const TB_BASE_IMAGE = "localhost/tb-base:bookworm";
