// The stop of a command: SIGHUP and lost output (EPIPE) are handled like SIGINT/SIGTERM — the stop signal aborts,
// listeners hear it once, the command's work is awaited, tracked sandboxes are removed, the fault's exit code.
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { test } from "node:test";
import { FAULT_EXIT_CODES, installSignalCleanup, onStop, stopSignal, track, whileRunning, type Fault } from "../../../src/sandbox/cleanup.js";

function fakeStream(): NodeJS.WriteStream {
  return new PassThrough() as unknown as NodeJS.WriteStream;
}

async function stopBy(fault: Fault, streams: NodeJS.WriteStream[]): Promise<{ exits: number[]; heard: Fault[]; order: string[] }> {
  const exits: number[] = [];
  const heard: Fault[] = [];
  const order: string[] = [];
  const uninstall = installSignalCleanup({ log: () => undefined, exit: (c) => exits.push(c), streams, drainMs: 2000 });
  const unsubscribe = onStop((f) => heard.push(f));
  track({ id: "x", remove: async () => void order.push("sandbox removed") });
  // the command's own work ends after the stop (e.g. its trials dropped): the removal of what is left waits for it
  let finish!: () => void;
  void whileRunning(new Promise<void>((r) => (finish = r)).then(() => void order.push("work done")));
  try {
    if (fault === "EPIPE") streams[0]!.emit("error", Object.assign(new Error("write EPIPE"), { code: "EPIPE" }));
    else process.emit(fault as NodeJS.Signals);
    assert.equal(stopSignal().aborted, true);
    assert.equal(stopSignal().reason, fault);
    // the other stream's reader going away too is not a second fault
    streams[1]!.emit("error", Object.assign(new Error("write EPIPE"), { code: "EPIPE" }));
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(exits, [], "waits for the command's work");
    finish();
    await new Promise((r) => setTimeout(r, 50));
    return { exits, heard, order };
  } finally {
    unsubscribe();
    uninstall();
  }
}

for (const fault of ["SIGHUP", "EPIPE", "SIGINT", "SIGTERM"] as const) {
  test(`${fault}: stop signal, listeners once, the work awaited, then sandboxes removed, exit ${FAULT_EXIT_CODES[fault]}`, async () => {
    const streams = [fakeStream(), fakeStream()];
    const { exits, heard, order } = await stopBy(fault, streams);
    assert.deepEqual(heard, [fault]);
    assert.deepEqual(order, ["work done", "sandbox removed"]);
    assert.deepEqual(exits, [FAULT_EXIT_CODES[fault]]);
    if (fault === "EPIPE") assert.equal(streams[0]!.write("more"), true, "later writes to the closed stream are dropped, not raised");
  });
}

test("the exit codes are 128 + the signal's number (SIGPIPE's for lost output)", () => {
  assert.deepEqual(FAULT_EXIT_CODES, { SIGHUP: 129, SIGINT: 130, EPIPE: 141, SIGTERM: 143 });
});
