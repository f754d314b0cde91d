// Engine-wide clean-up of what tmax left: its containers (verifier snapshots first) and compose networks, and its
// verifier snapshot images, chosen by label (job, owner, test run) and re-checked here, whatever the engine filtered.
import type Docker from "dockerode";
import { prunable, type PruneFilter } from "../owner.js";
import { TMAX_JOB_LABEL, TMAX_LABEL } from "../types.js";
import { pruneNetworks } from "./compose.js";
import { engineError } from "./engine.js";

/** Containers with tmax's label selected by `filter`. */
export async function prunableContainers(docker: Docker, filter: PruneFilter = {}): Promise<Docker.ContainerInfo[]> {
  const label = [`${TMAX_LABEL}=1`, ...(filter.job ? [`${TMAX_JOB_LABEL}=${filter.job}`] : [])];
  let list: Docker.ContainerInfo[];
  try {
    list = await docker.listContainers({ all: true, filters: { label } });
  } catch (err) {
    throw engineError(docker, err, "exec_failed", "cannot list containers");
  }
  // Re-check here, whatever the engine's filter did: only tmax's containers, and only those selected.
  return list.filter((c) => c.Labels?.[TMAX_LABEL] === "1" && prunable(c.Labels, filter));
}

export async function pruneContainers(docker: Docker, filter: PruneFilter = {}): Promise<number> {
  const chosen = await prunableContainers(docker, filter);
  const removeAll = (cs: Docker.ContainerInfo[]) =>
    Promise.all(
      cs.map((c) =>
        docker
          .getContainer(c.Id)
          .remove({ force: true, v: true })
          .then(
            () => 1,
            () => 0,
          ),
      ),
    );
  // verifier snapshots first: they share their agent container's network namespace, which the engine will not
  // remove while they exist
  const isSnapshot = (c: Docker.ContainerInfo) => c.Labels?.[`${TMAX_LABEL}.snapshot`] === "1";
  const removed = [...(await removeAll(chosen.filter(isSnapshot))), ...(await removeAll(chosen.filter((c) => !isSnapshot(c))))];
  // a compose network goes with its job (or --all); orphan pruning leaves networks alone (one may be in use by a
  // live job between its creation and its first container)
  if (filter.job || filter.all) await pruneNetworks(docker, filter.job);
  return removed.reduce((a, b) => a + b, 0);
}

/**
 * Verifier snapshot images (a commit carries the container's labels: job, owner, test run) left by a process that
 * died between the commit and the removal of its snapshot sandbox; chosen by the same rule as containers.
 */
export async function pruneSnapshotImages(docker: Docker, filter: PruneFilter = {}): Promise<number> {
  const list = (all: boolean) => prunableImages(docker, filter, all);
  const remove = (id: string) =>
    docker
      .getImage(id)
      .remove({ force: true })
      .then(
        () => 1,
        () => 0,
      );
  // the commits first, one at a time; then what they leave labelled (an intermediate layer image whose removal
  // failed while the commit still depended on it)
  let removed = 0;
  for (const image of await list(false)) removed += await remove(image.Id);
  for (let round = 0; round < 3; round++) {
    const rest = await list(true);
    let n = 0;
    for (const image of rest) n += await remove(image.Id);
    if (n === 0) break;
  }
  return removed;
}

/** Verifier snapshot images selected by `filter` (`all`: intermediate layers too). */
export async function prunableImages(docker: Docker, filter: PruneFilter, all: boolean): Promise<Docker.ImageInfo[]> {
  try {
    // one label filter only: podman 4.3's images endpoint answers nothing for two (its CLI ORs them); the job
    // and the owner are checked here
    const images = await docker.listImages({ all, filters: { label: [`${TMAX_LABEL}.snapshot=1`] } });
    return images.filter((i) => i.Labels?.[`${TMAX_LABEL}.snapshot`] === "1" && prunable(i.Labels, filter));
  } catch (err) {
    throw engineError(docker, err, "exec_failed", "cannot list images");
  }
}
