// After the engine (e2e) suite: no container or network of THIS test run may be left on the engine. The engine is
// shared (other users, other runs), so only what carries this run's label (io.tmax.test-run=$TMAX_TEST_RUN, set by
// `npm run test:e2e` for every process it starts) counts. Run as a step after the suite, whatever its outcome.
//   TMAX_TEST_RUN=<id> node --import tsx scripts/leak-check.ts   → exit 0 clean, 1 leaked, 2 cannot check
import { connectEngine, defaultEngineHost, engineCandidates } from "../src/sandbox/docker/engine.js";
import { TEST_RUN_LABEL } from "../src/sandbox/owner.js";
import { TMAX_LABEL } from "../src/sandbox/types.js";

const run = process.env.TMAX_TEST_RUN;
if (!run) {
  console.error("leak-check: TMAX_TEST_RUN is not set (run it through `npm run test:e2e`)");
  process.exit(2);
}
// every test file labels its own id under the run's (`<run>.<pid>`, test/support/env.ts)
const ours = (labels: Record<string, string> | undefined) => {
  const v = labels?.[TEST_RUN_LABEL];
  return v === run || !!v?.startsWith(`${run}.`);
};

// Every engine a test may have used: TMAX_LEAK_CHECK_ENGINES (space-separated), else DOCKER_HOST's and every other
// engine that answers on this host (podman and Docker Engine side by side are both checked).
const listed = process.env.TMAX_LEAK_CHECK_ENGINES?.split(/\s+/).filter(Boolean);
const hosts = listed?.length ? listed : [defaultEngineHost(), ...engineCandidates({ env: { ...process.env, DOCKER_HOST: "" } }).filter((c) => !c.error).map((c) => c.host)];
let checked = 0;
let leaked = 0;
for (const host of [...new Set(hosts)]) {
  const docker = connectEngine(host);
  try {
    await docker.ping();
  } catch (err) {
    if (listed?.length) console.log(`leak-check: ${host}: skipped, no engine answers (${(err as Error).message.split("\n")[0]})`);
    continue;
  }
  checked++;
  const containers = (await docker.listContainers({ all: true, filters: { label: [`${TMAX_LABEL}=1`, TEST_RUN_LABEL] } })).filter((c) => ours(c.Labels));
  const networks = (await docker.listNetworks({ filters: { label: [TEST_RUN_LABEL] } })).filter((n) => ours(n.Labels));
  const left = [...containers.map((c) => `container ${c.Names?.[0]?.replace(/^\//, "") ?? c.Id.slice(0, 12)} (${c.State})`), ...networks.map((n) => `network ${n.Name}`)];
  if (left.length) {
    leaked += left.length;
    console.error(`leak-check: ${left.length} left behind on ${host} by test run ${run}:`);
    for (const l of left) console.error(`  ${l}`);
  } else console.log(`leak-check: nothing of test run ${run} is left on ${host}`);
}
if (!checked) console.log("leak-check: skipped, no container engine answers");
process.exit(leaked ? 1 : 0);
