// The sandbox contract (test/support/sandboxContract.ts) on the docker backend, through both exec paths: the
// resident executor (the default) and an exec per command.
import { connectEngine, dockerBackend, TMAX_JOB_LABEL } from "../../../../src/sandbox/index.js";
import { BASE_IMAGE, ENGINE_SKIP } from "../../../support/env.js";
import { sandboxContract } from "../../../support/sandboxContract.js";

const JOB = `sandbox-contract-${process.pid}`;

for (const executor of ["resident", "exec"] as const) {
  sandboxContract(
    `docker (${executor === "resident" ? "resident executor" : "an exec per command"})`,
    async (t) => {
      const sb = await dockerBackend({ docker: connectEngine(), executor }).create({ image: BASE_IMAGE, network: "none", labels: { [TMAX_JOB_LABEL]: JOB } });
      t.after(() => sb.remove());
      return sb;
    },
    { skip: ENGINE_SKIP },
  );
}
