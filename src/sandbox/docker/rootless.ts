// What rootless podman needs from the host that the engine itself does not check, and what its failures mean.
// Its networking (slirp4netns, pasta) opens /dev/net/tun as the user: Debian's udev makes the device 0666, but a
// host without udev (a container, some VMs) may have it 0600 root. Then every sandbox with a network and every
// image build with RUN steps fails, and podman 4.3 leaves its rootless network namespace half-made, so that later
// containers on a network fail with "failed to mount runtime directory for rootless netns" even once the device
// is fixed, until `podman system migrate` (measured on podman 4.3.1, rootless, as a user without a login session).
import { accessSync, constants, existsSync } from "node:fs";

export const TUN_DEVICE = "/dev/net/tun";

export interface HostProblem {
  what: string;
  fix: string;
}

const MIGRATE = "then `podman system migrate` (clears what failed attempts left)";

/** Is the tun device there and read-write for this process (the user rootless podman runs as)? */
export function tunProblem(device = TUN_DEVICE): HostProblem | undefined {
  const effect = "rootless podman's networking (slirp4netns, pasta) cannot start: sandboxes with a network and image builds fail";
  if (!existsSync(device)) {
    return { what: `${device} does not exist: ${effect}`, fix: `\`sudo modprobe tun\` (in a container: \`sudo mkdir -p /dev/net && sudo mknod -m 0666 ${device} c 10 200\`), ${MIGRATE}` };
  }
  try {
    accessSync(device, constants.R_OK | constants.W_OK);
    return undefined;
  } catch {
    return { what: `${device} is not read-write for this user: ${effect}`, fix: `\`sudo chmod 0666 ${device}\` (Debian's default mode; a host without udev leaves it 0600), ${MIGRATE}` };
  }
}

/** The fix for an engine message that names a known rootless failure; undefined for any other message. */
export function rootlessHint(message: string): string | undefined {
  if (/\/dev\/net\/tun\W{0,8}(Permission denied|No such file)/i.test(message)) {
    return `rootless networking needs ${TUN_DEVICE} read-write: \`sudo chmod 0666 ${TUN_DEVICE}\`, ${MIGRATE}`;
  }
  if (/rootless netns|rootless network namespace/i.test(message)) {
    return `podman's rootless network namespace was left half-made by an earlier failure (often ${TUN_DEVICE}; \`tmax doctor\` checks it): \`podman system migrate\` resets it`;
  }
  return undefined;
}

/** `message`, with the hint of rootlessHint appended when there is one. */
export function withRootlessHint(message: string): string {
  const hint = rootlessHint(message);
  return hint && !message.includes(hint) ? `${message} (${hint})` : message;
}
