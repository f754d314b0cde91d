// The host guard's rules as generated for podman (FORWARD) and Docker Engine (DOCKER-USER, docker0/br-+), IPv4 and
// IPv6, and checked by the real iptables-restore in test mode (nothing is changed) where it can run.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { GUARD_CHAIN, GUARD_DNAT_CHAIN, GUARD_MARK, guardInterfaces, guardPlan, jumpArgs, restoreScript } from "../../../../src/sandbox/docker/hostGuard.js";

const CAN_TEST = typeof process.getuid === "function" && process.getuid() === 0 && spawnSync("iptables-restore", ["--version"]).status === 0;

test("IPv4 plan: INPUT reject, metadata drop, published ports refused before DNAT and rejected after it", () => {
  const plan = guardPlan("ipv4");
  assert.deepEqual(plan.chains.map((c) => [c.table, c.chain, c.hook]), [
    ["filter", GUARD_CHAIN, "INPUT"],
    ["mangle", GUARD_CHAIN, "PREROUTING"],
    ["nat", GUARD_DNAT_CHAIN, "PREROUTING"],
    ["mangle", GUARD_DNAT_CHAIN, "PREROUTING"],
    ["filter", GUARD_DNAT_CHAIN, "FORWARD"],
  ]);
  assert.equal(
    restoreScript(plan),
    [
      "*filter",
      `:${GUARD_CHAIN} - [0:0]`,
      `:${GUARD_DNAT_CHAIN} - [0:0]`,
      `-A ${GUARD_CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN`,
      `-A ${GUARD_CHAIN} -p udp -m udp --dport 53 -j RETURN`,
      `-A ${GUARD_CHAIN} -p tcp -m tcp --dport 53 -j RETURN`,
      `-A ${GUARD_CHAIN} -p tcp -j REJECT --reject-with tcp-reset`,
      `-A ${GUARD_CHAIN} -j REJECT --reject-with icmp-port-unreachable`,
      `-A ${GUARD_DNAT_CHAIN} -m mark --mark ${GUARD_MARK}/${GUARD_MARK} -m conntrack --ctstate DNAT -p tcp -j REJECT --reject-with tcp-reset`,
      `-A ${GUARD_DNAT_CHAIN} -m mark --mark ${GUARD_MARK}/${GUARD_MARK} -m conntrack --ctstate DNAT -j REJECT --reject-with icmp-port-unreachable`,
      "COMMIT",
      "*mangle",
      `:${GUARD_CHAIN} - [0:0]`,
      `:${GUARD_DNAT_CHAIN} - [0:0]`,
      `-A ${GUARD_CHAIN} -p udp -m udp --dport 53 -j RETURN`,
      `-A ${GUARD_CHAIN} -p tcp -m tcp --dport 53 -j RETURN`,
      `-A ${GUARD_CHAIN} -d 169.254.0.0/16 -j DROP`,
      `-A ${GUARD_DNAT_CHAIN} -p udp -m udp --dport 53 -j RETURN`,
      `-A ${GUARD_DNAT_CHAIN} -p tcp -m tcp --dport 53 -j RETURN`,
      `-A ${GUARD_DNAT_CHAIN} -m addrtype --dst-type LOCAL -j MARK --set-xmark ${GUARD_MARK}/${GUARD_MARK}`,
      "COMMIT",
      "*nat",
      `:${GUARD_DNAT_CHAIN} - [0:0]`,
      `-A ${GUARD_DNAT_CHAIN} -p udp -m udp --dport 53 -j RETURN`,
      `-A ${GUARD_DNAT_CHAIN} -p tcp -m tcp --dport 53 -j RETURN`,
      `-A ${GUARD_DNAT_CHAIN} -m addrtype --dst-type LOCAL -j ACCEPT`,
      "COMMIT",
      "",
    ].join("\n"),
  );
  assert.deepEqual(jumpArgs(plan.chains[2]!, "podman+"), ["PREROUTING", "-i", "podman+", "-j", GUARD_DNAT_CHAIN]);
});

test("Docker Engine: the same chains on docker0 and br-+, forwarded traffic filtered in DOCKER-USER", () => {
  const ifaces = guardInterfaces({}, "docker");
  for (const family of ["ipv4", "ipv6"] as const) {
    const plan = guardPlan(family, "DOCKER-USER");
    const forward = plan.chains.find((c) => c.table === "filter" && c.chain === GUARD_DNAT_CHAIN)!;
    assert.equal(forward.hook, "DOCKER-USER");
    assert.deepEqual(ifaces.map((i) => jumpArgs(forward, i)), [
      ["DOCKER-USER", "-i", "docker0", "-j", GUARD_DNAT_CHAIN],
      ["DOCKER-USER", "-i", "br-+", "-j", GUARD_DNAT_CHAIN],
    ]);
    // everything else is the same as for podman
    assert.deepEqual(plan.chains.filter((c) => c !== forward), guardPlan(family, "FORWARD").chains.filter((c) => c.hook !== "FORWARD"));
  }
});

test("IPv6 plan: ICMPv6 allowed on INPUT, icmp6 rejects, the v6 metadata address dropped", () => {
  const script = restoreScript(guardPlan("ipv6"));
  assert.equal(guardPlan("ipv6").tool, "ip6tables");
  assert.match(script, /-A TMAX_HOST_GUARD -p ipv6-icmp -j RETURN\n-A TMAX_HOST_GUARD -p tcp -j REJECT --reject-with tcp-reset\n-A TMAX_HOST_GUARD -j REJECT --reject-with icmp6-port-unreachable\n/);
  assert.match(script, /-A TMAX_HOST_GUARD_DNAT -m mark --mark 0x1000\/0x1000 -m conntrack --ctstate DNAT -j REJECT --reject-with icmp6-port-unreachable\n/);
  assert.match(script, /-A TMAX_HOST_GUARD -d fd00:ec2::254\/128 -j DROP\n/);
  assert.ok(!script.includes("icmp-port-unreachable\n") && !script.includes("169.254"));
});

test("iptables-restore and ip6tables-restore accept every generated script (test mode, nothing changed)", { skip: CAN_TEST ? false : "skipped: needs root and iptables" }, () => {
  for (const family of ["ipv4", "ipv6"] as const) {
    for (const hook of ["FORWARD", "DOCKER-USER"] as const) {
      const plan = guardPlan(family, hook);
      const r = spawnSync(plan.restore, ["-w", "--noflush", "--test"], { input: restoreScript(plan), encoding: "utf8" });
      assert.equal(r.status, 0, `${plan.restore} ${hook}: ${r.stderr}`);
    }
  }
});
