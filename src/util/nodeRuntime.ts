// Which Node.js release runs tmax, and whether it is still supported upstream.
// Source: the Node.js release schedule (github.com/nodejs/Release); an odd major is never LTS and ends after ~6 months.

/** End of life of each Node.js major (UTC dates, the schedule's "End-of-life" column). */
export const NODE_END_OF_LIFE: Readonly<Record<number, string>> = {
  18: "2025-04-30",
  19: "2023-06-01",
  20: "2026-04-30",
  21: "2024-06-01",
  22: "2027-04-30",
  23: "2025-06-01",
  24: "2028-04-30",
  25: "2026-06-01",
  26: "2029-04-30",
};

/** The majors the test suite runs on (CI: the whole suite on the first, the engine-free suite on the others). */
export const TESTED_NODE_MAJORS = [24, 22, 20] as const;

export interface NodeRuntimeStatus {
  version: string;
  major: number;
  /** The end-of-life date of this major, when the table knows it. */
  endOfLife?: string;
  /** True when `now` is on or after that date. */
  endOfLifeReached: boolean;
  tested: boolean;
}

/** The status of a Node.js version string such as `v20.20.2` at `now`. */
export function nodeRuntimeStatus(version: string = process.version, now: Date = new Date()): NodeRuntimeStatus {
  const major = Number.parseInt(version.replace(/^v/, ""), 10);
  const endOfLife = NODE_END_OF_LIFE[major];
  return {
    version,
    major,
    ...(endOfLife ? { endOfLife } : {}),
    endOfLifeReached: endOfLife !== undefined && now.getTime() >= Date.parse(`${endOfLife}T00:00:00Z`),
    tested: (TESTED_NODE_MAJORS as readonly number[]).includes(major),
  };
}

/** One line for `tmax doctor`: the version, and a warning with the fix when it is end-of-life or untested. */
export function describeNodeRuntime(s: NodeRuntimeStatus): { ok: boolean | "warn"; what: string; fix?: string } {
  if (s.endOfLifeReached) {
    return {
      ok: "warn",
      what: `Node.js ${s.version}: end of life since ${s.endOfLife} (no more security fixes)`,
      fix: `install Node.js ${TESTED_NODE_MAJORS[0]} LTS; tmax is tested on ${TESTED_NODE_MAJORS.join(", ")}`,
    };
  }
  if (!s.tested) {
    return { ok: "warn", what: `Node.js ${s.version}: not a version tmax is tested on (${TESTED_NODE_MAJORS.join(", ")})`, fix: `use Node.js ${TESTED_NODE_MAJORS[0]} LTS if something misbehaves` };
  }
  return { ok: true, what: `Node.js ${s.version} (supported until ${s.endOfLife})` };
}
