// The sandbox contract (test/support/sandboxContract.ts) on the backends that need no container engine: the local
// backend (this machine, --unsafe) and the Daytona backend against the in-process fake of its SDK.
import { localBackend } from "../../../src/sandbox/index.js";
import { withSandbox } from "../../support/daytonaFake.js";
import { sandboxContract } from "../../support/sandboxContract.js";

sandboxContract("local", async (t) => {
  const sb = await localBackend({ unsafe: true }).create({});
  t.after(() => sb.remove());
  return sb;
});

sandboxContract("daytona (the SDK fake)", async (t) => (await withSandbox(t)).sandbox);
