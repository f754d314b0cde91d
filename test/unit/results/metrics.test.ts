// Score statistics against hand-computed values.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  assignRuns,
  errorsByType,
  passAtK,
  passAtKOverTasks,
  perRunMeans,
  scoreJob,
  summarize,
  taskTable,
  type ScoredTrial,
} from "../../../src/results/metrics.js";

const close = (actual: number, expected: number, msg?: string) =>
  assert.ok(Math.abs(actual - expected) < 1e-12, `${msg ?? ""} expected ${expected}, got ${actual}`);

function trial(task: string, attempt: number, reward: number, extra: Partial<ScoredTrial> = {}): ScoredTrial {
  return { task_name: task, trial_name: `${task}__${attempt}`, attempt, reward, exception_info: null, ...extra };
}

describe("summarize", () => {
  test("sample std (n−1) and SEM (std/√n) on [0.5, 0.6, 0.7]", () => {
    const s = summarize([0.5, 0.6, 0.7]);
    assert.equal(s.n, 3);
    close(s.mean, 0.6);
    close(s.std, 0.1); // sqrt((0.01 + 0 + 0.01) / 2)
    close(s.sem, 0.1 / Math.sqrt(3)); // 0.0577...
    assert.ok(s.sem < s.std);
  });

  test("one value has a mean but no spread; none has nothing", () => {
    const one = summarize([0.4]);
    close(one.mean, 0.4);
    assert.ok(Number.isNaN(one.std) && Number.isNaN(one.sem));
    assert.ok(Number.isNaN(summarize([]).mean));
  });
});

describe("passAtK", () => {
  test("hand-computed: n=5, c=2 → pass@2 = 0.7, pass@1 = 0.4", () => {
    close(passAtK(5, 2, 2), 0.7); // 1 − C(3,2)/C(5,2) = 1 − 3/10
    close(passAtK(5, 2, 1), 0.4); // = c/n
  });

  test("edges: c=0 → 0, n−c<k → 1, all successes → 1", () => {
    assert.equal(passAtK(5, 0, 3), 0);
    assert.equal(passAtK(5, 4, 2), 1);
    assert.equal(passAtK(3, 3, 1), 1);
  });

  test("stable for large n where the binomials overflow", () => {
    const v = passAtK(2000, 3, 1000);
    close(v, 1 - (1000 / 2000) * (999 / 1999) * (998 / 1998));
    assert.ok(Number.isFinite(passAtK(5000, 10, 2500)));
  });

  test("invalid arguments throw", () => {
    assert.throws(() => passAtK(3, 1, 4), RangeError);
    assert.throws(() => passAtK(3, 4, 1), RangeError);
    assert.throws(() => passAtK(3, 1, 0), RangeError);
    assert.throws(() => passAtK(2.5, 1, 1), RangeError);
  });
});

describe("runs", () => {
  const results: ScoredTrial[] = [
    trial("a", 0, 1),
    trial("a", 1, 0),
    trial("a", 2, 1),
    trial("b", 0, 0),
    trial("b", 1, 1),
    trial("b", 2, 1),
    trial("c", 0, 0, { exception_info: { exception_type: "AgentTimeoutError" } }),
    trial("c", 1, 1),
  ];

  test("run i holds the i-th attempt of every task, whatever the input order", () => {
    const expected = [
      { a: "a__0", b: "b__0", c: "c__0" },
      { a: "a__1", b: "b__1", c: "c__1" },
      { a: "a__2", b: "b__2" },
    ];
    const shuffles = [results, [...results].reverse(), [3, 7, 0, 5, 1, 6, 2, 4].map((i) => results[i]!)];
    for (const input of shuffles) {
      const { tasks, runs } = assignRuns(input);
      assert.deepEqual(tasks, ["a", "b", "c"]);
      assert.deepEqual(
        runs.map((r) => Object.fromEntries([...r].map(([task, t]) => [task, t.trial_name]))),
        expected,
      );
    }
  });

  test("ties on attempt are broken by trial_name", () => {
    const dup = [trial("a", 0, 1, { trial_name: "a__zz" }), trial("a", 0, 0, { trial_name: "a__aa" })];
    const { runs } = assignRuns(dup);
    assert.deepEqual(runs.map((r) => r.get("a")!.trial_name), ["a__aa", "a__zz"]);
  });

  test("per-run means count a missing task as 0 and report it", () => {
    const { means, missing } = perRunMeans(results);
    close(means[0]!, 1 / 3);
    close(means[1]!, 2 / 3);
    close(means[2]!, 2 / 3); // c has no third trial: counts 0
    assert.deepEqual(missing, [{ run: 2, task: "c" }]);
  });

  test("expected tasks and runs absent from the results count 0", () => {
    const { means, missing, tasks } = perRunMeans([trial("a", 0, 1)], { expectedTasks: ["a", "broken"], nRuns: 2 });
    assert.deepEqual(tasks, ["a", "broken"]);
    assert.deepEqual(means, [0.5, 0]);
    assert.deepEqual(missing, [
      { run: 0, task: "broken" },
      { run: 1, task: "a" },
      { run: 1, task: "broken" },
    ]);
  });

  test("a non-numeric reward counts 0", () => {
    const { means } = perRunMeans([trial("a", 0, Number.NaN), trial("b", 0, 1)]);
    assert.deepEqual(means, [0.5]);
  });
});

describe("tables", () => {
  const results: ScoredTrial[] = [
    trial("x", 0, 1),
    trial("x", 1, 0, { exception_info: { exception_type: "VerifierError" } }),
    trial("x", 2, 1),
    trial("x", 3, 0),
    trial("x", 4, 0),
    trial("y", 0, 0, { exception_info: { exception_type: "AgentTimeoutError" } }),
    trial("y", 1, 0, { exception_info: { exception_type: "AgentTimeoutError" } }),
    trial("z", 0, 1),
  ];

  test("pass@k over tasks averages tasks with at least k trials and lists the rest", () => {
    const p1 = passAtKOverTasks(results, 1);
    close(p1.value, (0.4 + 0 + 1) / 3);
    assert.deepEqual(p1.skipped, []);
    const p2 = passAtKOverTasks(results, 2);
    close(p2.value, (0.7 + 0) / 2);
    assert.equal(p2.tasks, 2);
    assert.deepEqual(p2.skipped, ["z"]);
  });

  test("per-task table", () => {
    const rows = taskTable(results, [1, 2]);
    assert.deepEqual(
      rows.map((r) => [r.task, r.n, r.successes, r.errors]),
      [
        ["x", 5, 2, 1],
        ["y", 2, 0, 2],
        ["z", 1, 1, 0],
      ],
    );
    close(rows[0]!.meanReward, 0.4);
    close(rows[0]!.passAtK["2"]!, 0.7);
    assert.equal(rows[2]!.passAtK["2"], null);
  });

  test("errors by exception type, most frequent first", () => {
    assert.deepEqual(errorsByType(results), [
      { exception_type: "AgentTimeoutError", count: 2, trials: ["y__0", "y__1"] },
      { exception_type: "VerifierError", count: 1, trials: ["x__1"] },
    ]);
  });

  test("scoreJob puts it together", () => {
    const s = scoreJob(results, { ks: [1, 2] });
    assert.equal(s.nTasks, 3);
    assert.equal(s.nTrials, 8);
    assert.equal(s.nRuns, 5);
    // run means: [x0=1,y0=0,z0=1]=2/3, [0,0,·]=0, [1,·,·]=1/3, 0, 0
    assert.deepEqual(s.runMeans.map((m) => Math.round(m * 1e9) / 1e9), [0.666666667, 0, 0.333333333, 0, 0]);
    close(s.score.mean, 0.2);
    close(s.passAtK["2"]!.value, 0.35);
    assert.equal(s.errors.length, 2);
    assert.equal(s.missing.length, 3 + 4); // y misses runs 2..4, z misses runs 1..4
  });
});
