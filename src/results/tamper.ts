// The tamper report as it is recorded in result.json: the integrity modes, the classes of findings and the report's
// schema, and its one-line summary. What is classified how is tamper.ts's (the trial computes the report);
// readers of results (report, explorer) need only this file.
import { z } from "zod";

export const IntegrityMode = z.enum(["strict", "flag", "off"]);
export type IntegrityMode = z.infer<typeof IntegrityMode>;

export const TAMPER_CLASSES = [
  "verifier-logs", // /logs/verifier: reward files
  "tests", // /tests: the test files (copied in only for the verifier)
  "pytest-config", // conftest.py / pytest.ini / pyproject.toml / setup.cfg / tox.ini at / or in the test dirs
  "site-hook", // .pth, sitecustomize.py, usercustomize.py: code Python runs at startup
  "test-runner", // pytest / _pytest / pluggy installed code, entry_points.txt of any package (pytest11 plugins)
  "interpreter", // python/perl/node … binaries and the Python stdlib
  "loader", // ld.so.preload, ld.so.conf, ld.so.cache, the dynamic loader, libc and every other system shared library
  "path-dir", // anything in a PATH directory (shadowing timeout, bash, cmp, python3 …)
  "shell-rc", // bashrc/profile files and /etc/environment
  "module-shadow", // pytest.py, shlex.py, attr/__init__.py … (stdlib and pytest's dependencies) in the workdir, imported first by `python -m`
  "network-config", // /etc/hosts, /etc/resolv.conf (the engine's files, edited), the CA bundle and trust dirs
  "toolchain", // the toolchain check (toolchain.ts): a file the verifier executes or imports differs from the image's
  "harness", // tmax's own tools in the verifier's container (bash, timeout, rm …) differ from the image's
] as const;
export type TamperClass = (typeof TAMPER_CLASSES)[number];

export const TamperFinding = z.object({
  path: z.string(),
  change: z.enum(["modified", "added", "deleted"]),
  class: z.string(),
});
export type TamperFinding = z.infer<typeof TamperFinding>;

export const TamperReport = z.object({
  mode: IntegrityMode,
  /** True when a finding falls in any class above. */
  flagged: z.boolean(),
  /** strict mode: the reward was set to 0 because of the findings. */
  zeroed: z.boolean(),
  /** Counts per class. */
  classes: z.record(z.string(), z.number()),
  /** The findings (at most MAX_FINDINGS; `n_findings` has the total). */
  findings: z.array(TamperFinding),
  n_findings: z.number(),
  /** Changes the engine listed in all (tmax's own paths excluded). */
  n_changes: z.number(),
  /** How the verifier ran: snapshot | kill | shared, and whether the Python/pytest hardening applied. */
  verifier_isolation: z.string().optional(),
  verifier_hardened: z.boolean().optional(),
  note: z.string().optional(),
  /** Files the agent added earlier in PATH than an image command of the same name, moved aside for the verifier. */
  quarantined: z.array(z.string()).optional(),
  /** The changes API could not be read (report incomplete). */
  error: z.string().optional(),
  /** The toolchain check (toolchain.ts): how long it took in the verifier's container and for the image baseline (ms; 0 = cached), or why it did not run. */
  toolchain: z.object({ ms: z.number(), baseline_ms: z.number(), error: z.string().optional() }).optional(),
  /** Whether the agent's processes were paused for the scan (and the snapshot's commit); absent when not known. */
  frozen: z.boolean().optional(),
  /**
   * A reward the verifier did not write (src/trial/verifierRun.ts): any `refuse` signal sets `forged`, and the
   * reward is 0 in every integrity mode; `flag` signals (a process of unknown origin in the verifier's dirs,
   * a snapshot refused for its size) flag the trial like a finding.
   */
  forged: z.boolean().optional(),
  signals: z.array(z.object({ signal: z.string(), severity: z.enum(["refuse", "flag"]), detail: z.string() })).optional(),
  /** Shared mode: sensitive paths that changed while the verifier ran (informational: test.sh installs tools too). */
  changed_during_verifier: z.array(z.string()).optional(),
  n_changed_during_verifier: z.number().optional(),
});
export type TamperReport = z.infer<typeof TamperReport>;

/** One line for terminals and reports: "flagged: path-dir 2, site-hook 1". */
export function tamperSummary(t: TamperReport | null | undefined): string {
  if (!t) return "";
  if (t.forged) {
    const names = [...new Set((t.signals ?? []).filter((s) => s.severity === "refuse").map((s) => s.signal))];
    return `refused (forged reward): ${names.join(", ")}`;
  }
  if (t.error) return `tamper report incomplete: ${t.error}`;
  if (!t.flagged) return "clean";
  const parts = [...Object.entries(t.classes).map(([k, n]) => `${k} ${n}`), ...[...new Set((t.signals ?? []).map((s) => s.signal))]];
  return `${t.zeroed ? "zeroed" : "flagged"}: ${parts.join(", ")}`;
}
