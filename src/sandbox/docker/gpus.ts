// GPU availability on the engine host: tasks asking for GPUs are refused in one line when there are none.
import { existsSync, readdirSync } from "node:fs";

/** NVIDIA device nodes on this host (/dev/nvidia0, …); the engine must be local for this to mean anything. */
export function hostGpuCount(): number {
  try {
    return readdirSync("/dev").filter((n) => /^nvidia\d+$/.test(n)).length;
  } catch {
    return 0;
  }
}

/** null when `wanted` GPUs can be given, else the one-line reason. */
export function gpuCheck(wanted: number, available = hostGpuCount()): string | null {
  if (wanted <= 0) return null;
  if (available === 0) return `the task needs ${wanted} GPU(s) ([environment] gpus) but this host has none${existsSync("/dev/dri") ? " (only /dev/dri, which is not supported)" : ""}`;
  if (available < wanted) return `the task needs ${wanted} GPU(s) ([environment] gpus) but this host has ${available}`;
  return null;
}
