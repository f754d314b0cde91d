// The host guard: containers on podman's bridge networks (tasks that allow internet, compose networks, even
// `internal` ones) reach every address the host listens on through their gateway (10.88.0.1, 10.89.x.1, the
// host's own IPs), so a model server or database bound to 0.0.0.0 is open to the agent. Traffic from a bridge
// to the host itself goes through the filter table's INPUT hook; traffic to the internet and between
// containers does not (FORWARD / bridged). The guard is one chain jumped to from INPUT for packets arriving on
// the bridges, which lets through only:
//   - replies to connections the host opened (conntrack ESTABLISHED,RELATED),
//   - DNS on port 53 (aardvark-dns answers service names on the gateway of compose networks),
//   - ICMPv6 (neighbour discovery: without it a v6 bridge loses its gateway),
// and rejects the rest (TCP with a reset, so a connect fails at once instead of hanging).
// A chain of the same name in the mangle table drops what the bridges send to the cloud metadata address
// (169.254.0.0/16, DNS excepted; fd00:ec2::254), where a cloud VM serves its instance credentials.
// Published container ports are DNAT'd before INPUT, so a second pair of chains (TMAX_HOST_GUARD_DNAT) marks in
// mangle PREROUTING what the bridges send to a local address and rejects it on FORWARD (Docker Engine:
// DOCKER-USER) once it was DNAT'd; see guardPlan.
//
// It is installed by `tmax setup` (as root) and, on a local rootful podman engine, again before the first bridge
// sandbox of a process (idempotent; the chain is rewritten atomically with `iptables-restore --noflush`).
// TMAX_HOST_GUARD: `auto` (default: install when possible, else warn once), `require` (refuse a bridge sandbox
// when the guard cannot be installed), `0` (leave the firewall alone). TMAX_HOST_GUARD_IFACES: the interface
// patterns (default `podman+`, and Docker Engine's `docker0 br-+` when it runs here: see hostInterfaces).
import { spawn } from "node:child_process";
import type Docker from "dockerode";
import { probeEngine } from "./discover.js";
import { engineAddress } from "./engine.js";

export const GUARD_CHAIN = "TMAX_HOST_GUARD";

export type GuardMode = "auto" | "require" | "off";

export function guardMode(env: NodeJS.ProcessEnv = process.env): GuardMode {
  const v = (env.TMAX_HOST_GUARD ?? "").trim().toLowerCase();
  if (v === "0" || v === "off" || v === "false" || v === "no") return "off";
  if (v === "require" || v === "required" || v === "strict") return "require";
  return "auto";
}

/** The bridge interface patterns: TMAX_HOST_GUARD_IFACES, else podman's (`podman+`) or Docker's (`docker0 br-+`). */
export function guardInterfaces(env: NodeJS.ProcessEnv = process.env, engine: "podman" | "docker" = "podman"): string[] {
  const list = (env.TMAX_HOST_GUARD_IFACES ?? (engine === "docker" ? "docker0 br-+" : "podman+")).split(/[\s,]+/).filter(Boolean);
  for (const i of list) if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}\+?$/.test(i)) throw new Error(`bad TMAX_HOST_GUARD_IFACES entry '${i}': expected an interface name or prefix ending in '+'`);
  return list;
}

/**
 * The bridges this host has to guard: TMAX_HOST_GUARD_IFACES, else podman's, and Docker Engine's as well when
 * Docker is the engine or its DOCKER-USER chain shows it runs here (both engines on one host: both guarded).
 */
export async function hostInterfaces(env: NodeJS.ProcessEnv = process.env, engine?: "podman" | "docker"): Promise<string[]> {
  if (env.TMAX_HOST_GUARD_IFACES !== undefined) return guardInterfaces(env);
  const docker = engine === "docker" || (await run("iptables", ["-w", "-t", "filter", "-S", "DOCKER-USER"])).code === 0;
  return docker ? [...guardInterfaces(env, "podman"), ...guardInterfaces(env, "docker")] : guardInterfaces(env, "podman");
}

/** The packet mark bit the guard sets (mangle, before any DNAT) on what the bridges send to an address of this host. */
export const GUARD_MARK = "0x1000";
/** The chain pair (mangle: mark, filter: reject) for published ports, kept apart from GUARD_CHAIN's rules. */
export const GUARD_DNAT_CHAIN = "TMAX_HOST_GUARD_DNAT";

type Hook = "INPUT" | "PREROUTING" | "FORWARD" | "DOCKER-USER";

/** One chain of the guard: its rules, and the built-in (or Docker's) chain that jumps to it for each bridge. */
export interface GuardChain {
  table: "filter" | "mangle" | "nat";
  chain: string;
  hook: Hook;
  rules: string[];
}

export interface GuardPlan {
  tool: "iptables" | "ip6tables";
  restore: "iptables-restore" | "ip6tables-restore";
  chains: GuardChain[];
}

const DNS = ["-p udp -m udp --dport 53 -j RETURN", "-p tcp -m tcp --dport 53 -j RETURN"];
const REPLIES = "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN";

/**
 * The guard's chains for one family. `forwardHook` is where forwarded traffic is filtered: FORWARD, or Docker
 * Engine's DOCKER-USER chain when it exists (Docker puts its own ACCEPT rules in FORWARD, after a jump to
 * DOCKER-USER that it keeps first, and leaves DOCKER-USER's rules alone).
 *
 * Published ports: a container started with `-p 8000:8000` (a containerised model server) is reached through a
 * DNAT rule in nat PREROUTING for every local address, so a bridge's packet to <host address>:8000 is rewritten to
 * the container's address and forwarded: INPUT never sees it (measured: open through the host's IP and the
 * gateway with the INPUT guard in place). Two rules close that:
 *   - nat PREROUTING, first: what the bridges send to a local address (DNS excepted, as on INPUT) is ACCEPTed
 *     there, which ends the table's PREROUTING before the engine's DNAT rules: the packet stays addressed to the
 *     host and INPUT rejects it at once (a reset);
 *   - a backstop for a DNAT this table does not hold (an engine's own nftables table): mangle PREROUTING, before
 *     any NAT, marks what the bridges send to a local address, and the forward hook rejects a marked packet whose
 *     connection was DNAT'd (the reset cannot be un-NAT'd there, so the connect fails by timing out).
 * Container-to-container and internet traffic is untouched (its destination is not a local address).
 */
export function guardPlan(family: "ipv4" | "ipv6", forwardHook: "FORWARD" | "DOCKER-USER" = "FORWARD"): GuardPlan {
  const v6 = family === "ipv6";
  const unreachable = v6 ? "icmp6-port-unreachable" : "icmp-port-unreachable";
  const marked = `-m mark --mark ${GUARD_MARK}/${GUARD_MARK} -m conntrack --ctstate DNAT`;
  return {
    tool: v6 ? "ip6tables" : "iptables",
    restore: v6 ? "ip6tables-restore" : "iptables-restore",
    chains: [
      {
        table: "filter", chain: GUARD_CHAIN, hook: "INPUT",
        rules: [REPLIES, ...DNS, ...(v6 ? ["-p ipv6-icmp -j RETURN"] : []), "-p tcp -j REJECT --reject-with tcp-reset", `-j REJECT --reject-with ${unreachable}`],
      },
      // cloud instance metadata (credentials) answers on link-local 169.254.169.254, routed, not local: dropped
      // before routing; DNS stays open (some clouds resolve on 169.254.169.253)
      { table: "mangle", chain: GUARD_CHAIN, hook: "PREROUTING", rules: [...DNS, v6 ? "-d fd00:ec2::254/128 -j DROP" : "-d 169.254.0.0/16 -j DROP"] },
      { table: "nat", chain: GUARD_DNAT_CHAIN, hook: "PREROUTING", rules: [...DNS, "-m addrtype --dst-type LOCAL -j ACCEPT"] },
      { table: "mangle", chain: GUARD_DNAT_CHAIN, hook: "PREROUTING", rules: [...DNS, `-m addrtype --dst-type LOCAL -j MARK --set-xmark ${GUARD_MARK}/${GUARD_MARK}`] },
      {
        table: "filter", chain: GUARD_DNAT_CHAIN, hook: forwardHook,
        rules: [`${marked} -p tcp -j REJECT --reject-with tcp-reset`, `${marked} -j REJECT --reject-with ${unreachable}`],
      },
    ],
  };
}

/** The `*-restore --noflush` input that (re)writes every chain of `plan`: declaring a chain creates or empties it. */
export function restoreScript(plan: GuardPlan): string {
  const lines: string[] = [];
  for (const table of ["filter", "mangle", "nat"] as const) {
    const chains = plan.chains.filter((c) => c.table === table);
    if (!chains.length) continue;
    lines.push(`*${table}`, ...chains.map((c) => `:${c.chain} - [0:0]`), ...chains.flatMap((c) => c.rules.map((r) => `-A ${c.chain} ${r}`)), "COMMIT");
  }
  return lines.join("\n") + "\n";
}

/** The arguments (after `-t <table>`) of the jump from `c.hook` to `c.chain` for packets arriving on `iface`. */
export function jumpArgs(c: GuardChain, iface: string): string[] {
  return [c.hook, "-i", iface, "-j", c.chain];
}

interface RunResult {
  code: number;
  out: string;
}

function run(cmd: string, args: string[], input?: string): Promise<RunResult> {
  return new Promise((resolve) => {
    let out = "";
    let child;
    try {
      // iptables lives in /usr/sbin, which a user's PATH on Debian lacks: without it a user's doctor said "not
      // installed" where the truth is "cannot read the firewall" (root's PATH is left as it is)
      const user = typeof process.getuid === "function" && process.getuid() !== 0;
      const env = user ? { ...process.env, PATH: [process.env.PATH, "/usr/sbin", "/sbin"].filter(Boolean).join(":") } : process.env;
      child = spawn(cmd, args, { stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"], env });
    } catch (err) {
      resolve({ code: 127, out: (err as Error).message });
      return;
    }
    child.stdout!.on("data", (d) => (out += d));
    child.stderr!.on("data", (d) => (out += d));
    child.on("error", (err) => resolve({ code: 127, out: err.message }));
    child.on("close", (code) => resolve({ code: code ?? 1, out: out.trim() }));
    if (input !== undefined) child.stdin!.end(input);
  });
}

async function available(tool: GuardPlan["tool"]): Promise<boolean> {
  return (await run(tool, ["--version"])).code === 0;
}

/** The plans of the families this host has (IPv4 always, IPv6 when ip6tables exists), each with its forward hook. */
async function hostPlans(): Promise<GuardPlan[]> {
  const plans: GuardPlan[] = [];
  for (const family of ["ipv4", "ipv6"] as const) {
    const tool = family === "ipv4" ? "iptables" : "ip6tables";
    if (family === "ipv6" && !(await available(tool))) continue;
    // Docker Engine's DOCKER-USER chain runs before Docker's own ACCEPT rules in FORWARD
    const dockerUser = (await run(tool, ["-w", "-t", "filter", "-S", "DOCKER-USER"])).code === 0;
    plans.push(guardPlan(family, dockerUser ? "DOCKER-USER" : "FORWARD"));
  }
  return plans;
}

export interface GuardStatus {
  /** True when every available family has the chains with the expected rules and a jump for every interface. */
  installed: boolean;
  /** One line: what is there or what is missing. */
  detail: string;
}

/** Reads the firewall (needs root): is the guard in place for IPv4 (and IPv6 when ip6tables exists)? */
export async function hostGuardStatus(given?: string[]): Promise<GuardStatus> {
  const ifaces = given ?? (await hostInterfaces());
  if (!(await available("iptables"))) return { installed: false, detail: "iptables is not installed" };
  const missing: string[] = [];
  for (const plan of await hostPlans()) {
    for (const c of plan.chains) {
      const listed = await run(plan.tool, ["-w", "-t", c.table, "-S", c.chain]);
      if (listed.code !== 0) {
        if (/permission denied|must be root/i.test(listed.out)) return { installed: false, detail: `cannot read the firewall: ${listed.out.split("\n")[0]}` };
        missing.push(`${plan.tool} ${c.table} chain ${c.chain}`);
        continue;
      }
      const have = listed.out.split("\n").filter((l) => l.startsWith(`-A ${c.chain} `)).length;
      if (have !== c.rules.length) missing.push(`${plan.tool} ${c.table} ${c.chain} rules (${have} of ${c.rules.length})`);
      for (const i of ifaces) {
        if ((await run(plan.tool, ["-w", "-t", c.table, "-C", ...jumpArgs(c, i)])).code !== 0) missing.push(`${plan.tool} ${c.table} ${c.hook} jump to ${c.chain} for ${i}`);
      }
    }
  }
  return missing.length
    ? { installed: false, detail: `missing: ${missing.slice(0, 3).join(", ")}${missing.length > 3 ? ` and ${missing.length - 3} more` : ""}` }
    : { installed: true, detail: `${GUARD_CHAIN} on ${ifaces.join(" ")}: bridge containers cannot open connections to the host, its published ports or the cloud metadata address` };
}

/** Installs (or repairs) the guard. Throws with one line when the firewall cannot be changed. */
export async function installHostGuard(given?: string[]): Promise<void> {
  const ifaces = given ?? (await hostInterfaces());
  if (!(await available("iptables"))) throw new Error("iptables is not installed (apt-get install iptables)");
  for (const plan of await hostPlans()) {
    // --noflush keeps every other rule; each chain is rewritten in one transaction per family
    const restored = await run(plan.restore, ["-w", "--noflush"], restoreScript(plan));
    if (restored.code !== 0) throw new Error(`${plan.restore} failed: ${restored.out.split("\n")[0] || `exit ${restored.code}`}`);
    for (const c of plan.chains) {
      for (const i of ifaces) {
        if ((await run(plan.tool, ["-w", "-t", c.table, "-C", ...jumpArgs(c, i)])).code === 0) continue;
        const [hook, ...rest] = jumpArgs(c, i);
        const inserted = await run(plan.tool, ["-w", "-t", c.table, "-I", hook!, "1", ...rest]);
        if (inserted.code !== 0) throw new Error(`${plan.tool} -t ${c.table} -I ${hook} failed: ${inserted.out.split("\n")[0]}`);
      }
    }
  }
}

/** Removes every jump to the guard's chains (whatever their interface or hook) and the chains, in both families. */
export async function removeHostGuard(): Promise<void> {
  for (const family of ["ipv4", "ipv6"] as const) {
    const plan = guardPlan(family);
    if (!(await available(plan.tool))) continue;
    // FORWARD and DOCKER-USER both: the hook in use depends on whether Docker Engine was there at install time
    const hooks = [...plan.chains, { ...plan.chains.at(-1)!, hook: "DOCKER-USER" as const }];
    for (const c of hooks) {
      const hook = await run(plan.tool, ["-w", "-t", c.table, "-S", c.hook]);
      for (const line of hook.out.split("\n")) {
        const m = new RegExp(`^-A ${c.hook} (.*-j ${c.chain})$`).exec(line.trim());
        if (m) await run(plan.tool, ["-w", "-t", c.table, "-D", c.hook, ...m[1]!.split(/\s+/)]);
      }
    }
    for (const c of plan.chains) {
      await run(plan.tool, ["-w", "-t", c.table, "-F", c.chain]);
      await run(plan.tool, ["-w", "-t", c.table, "-X", c.chain]);
    }
  }
}

/** Per engine address: the pending or settled install (one per process). */
const ensured = new Map<string, Promise<string | undefined>>();
let warned = false;

/**
 * Before the first bridge sandbox (or networked build) of this process on an engine: when the engine runs on
 * this host (a unix socket), install the guard for its bridges (idempotent). A remote engine's host is not
 * ours to change. Resolves with undefined when the guard is in place, switched off or not applicable, else
 * with the reason it is not (warned once on stderr); in `require` mode that reason is thrown instead.
 */
export function ensureHostGuard(docker: Docker): Promise<string | undefined> {
  const mode = guardMode();
  if (mode === "off") return Promise.resolve(undefined);
  let check = ensured.get(engineAddress(docker));
  if (!check) {
    check = (async () => {
      if (!engineAddress(docker).startsWith("unix://")) return undefined;
      const probe = await probeEngine({ host: engineAddress(docker), source: "DOCKER_HOST" });
      // a rootless engine's containers reach the host through slirp4netns/pasta or RootlessKit, not a host bridge
      if (probe.rootless) return "the engine is rootless: its containers reach this host through its user-mode network, which the guard cannot filter (bind host services to 127.0.0.1)";
      const ifaces = await hostInterfaces(process.env, probe.kind === "podman" ? "podman" : "docker");
      if (typeof process.getuid === "function" && process.getuid() !== 0) {
        const status = await hostGuardStatus(ifaces).catch(() => ({ installed: false, detail: "status unknown" }));
        return status.installed ? undefined : "not root, and the guard is not installed (run `sudo tmax sandbox guard`)";
      }
      try {
        await installHostGuard(ifaces);
        return undefined;
      } catch (err) {
        return (err as Error).message;
      }
    })();
    ensured.set(engineAddress(docker), check);
  }
  return check.then((reason) => {
    if (reason === undefined) return undefined;
    if (mode === "require") throw new Error(`host guard required (TMAX_HOST_GUARD=require) but not in place: ${reason}`);
    if (!warned) {
      warned = true;
      console.error(`tmax: warning: bridge containers can reach services on this host (host guard not installed: ${reason}); see docs/security.md`);
    }
    return reason;
  });
}
