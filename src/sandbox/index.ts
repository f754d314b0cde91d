// The sandbox layer's public face: pick a backend by name; everything else is re-exported from here.
import { daytonaBackend } from "./daytona/backend.js";
import { dockerBackend } from "./docker/backend.js";
import { localBackend } from "./local/backend.js";
import type { SandboxBackend, SandboxBackendName } from "./types.js";

export interface BackendOptions {
  /** docker: engine address in DOCKER_HOST form. */
  host?: string;
  /** local: required acknowledgement that commands run unconfined on this host. */
  unsafe?: boolean;
}

export function createBackend(name: SandboxBackendName, opts: BackendOptions = {}): SandboxBackend {
  switch (name) {
    case "docker":
      return dockerBackend({ host: opts.host });
    case "local":
      return localBackend({ unsafe: opts.unsafe });
    case "daytona":
      // Experimental; credentials come from DAYTONA_API_KEY (and DAYTONA_API_URL / DAYTONA_TARGET), the snapshot
      // name template from TMAX_DAYTONA_SNAPSHOT_TEMPLATE.
      return daytonaBackend();
    default:
      throw new Error(`unknown sandbox backend '${String(name)}' (expected docker, local or daytona)`);
  }
}

export * from "./types.js";
export { dockerBackend, DEFAULT_PIDS_LIMIT, type DockerBackendOptions, type DockerSandbox } from "./docker/backend.js";
export { localBackend, type LocalBackendOptions } from "./local/backend.js";
export { daytonaBackend, type DaytonaBackendOptions, type DaytonaSdkLike } from "./daytona/backend.js";
export { buildImage, parseImageMap, rewriteFromLines, baseImages, TASK_IMAGE_REPO, TMAX_IMAGE_LABEL, type BuildSpec, type BuildOptions } from "./docker/build.js";
export { track, untrack, trackedCount, removeAllTracked, installSignalCleanup, cleanupInstalled, pruneLeftovers, stopSignal, onStop, whileRunning, FAULT_EXIT_CODES, type Fault, type Removable, type SignalCleanupOptions } from "./cleanup.js";
export { connectEngine, parseDockerHost, DEFAULT_DOCKER_HOST } from "./docker/engine.js";
export { DEFAULT_MAX_OUTPUT_BYTES } from "./bytes/execOutput.js";
export {
  JOB_ID_LABEL,
  JOB_DIR_LABEL,
  OWNER_PID_LABEL,
  OWNER_HOST_LABEL,
  OWNER_START_LABEL,
  TEST_RUN_LABEL,
  ownerLabels,
  ownership,
  prunable,
  type PruneFilter,
} from "./owner.js";
