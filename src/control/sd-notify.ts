/**
 * systemd's notification protocol (sd_notify(3)), for deploy/systemd/switchyard.service's
 * Type=notify: one datagram of "KEY=VALUE" lines to the AF_UNIX socket named by $NOTIFY_SOCKET.
 * READY=1 once the listeners are bound; during an upgrade the successor sends
 * "MAINPID=<its pid>" with READY=1, so that systemd follows the new process as the service's
 * main process (NotifyAccess=all lets a process other than the main one say so) and does not
 * take the old one's exit for the service's end.
 *
 * Bun has no AF_UNIX datagram socket (node:dgram is UDP only), so the two system calls are made
 * through bun:ffi from glibc, which the binary links anyway. Without $NOTIFY_SOCKET (not under
 * systemd, or Type= other than notify) nothing is loaded and nothing is sent.
 */
import { dlopen, FFIType, ptr } from "bun:ffi";

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
/** sizeof(struct sockaddr_un): a 2-byte family, then 108 bytes of path. */
const SUN_PATH_MAX = 108;

let libc:
  | {
      symbols: {
        socket: (domain: number, type: number, protocol: number) => number;
        sendto: (fd: number, buf: unknown, len: number, flags: number, addr: unknown, addrlen: number) => number | bigint;
        close: (fd: number) => number;
      };
    }
  | undefined;

function load() {
  libc ??= dlopen("libc.so.6", {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    sendto: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i64 },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
  }) as unknown as typeof libc;
  return libc!;
}

/**
 * Send `state` ("READY=1", "MAINPID=123\nREADY=1"...) to $NOTIFY_SOCKET. Returns false when
 * there is no socket to tell, throws when the socket cannot be reached. A name starting with
 * "@" is in the abstract namespace (its first byte 0, no terminating 0).
 */
export function sdNotify(state: string, env: Record<string, string | undefined> = process.env): boolean {
  const target = env.NOTIFY_SOCKET;
  if (target === undefined || target === "") return false;
  if (!target.startsWith("/") && !target.startsWith("@")) throw new Error(`NOTIFY_SOCKET: got ${JSON.stringify(target)}, expected an absolute path or an abstract name (@...)`);
  const path = new TextEncoder().encode(target);
  if (path.length >= SUN_PATH_MAX) throw new Error(`NOTIFY_SOCKET: ${target} is longer than ${SUN_PATH_MAX - 1} bytes`);
  const abstract = target.startsWith("@");
  const addr = new Uint8Array(2 + SUN_PATH_MAX);
  new DataView(addr.buffer).setUint16(0, AF_UNIX, true);
  addr.set(path, 2);
  if (abstract) addr[2] = 0;
  // A path is given with its terminating 0; an abstract name exactly as long as it is.
  const addrLen = 2 + path.length + (abstract ? 0 : 1);
  const msg = new TextEncoder().encode(state);
  const { symbols } = load();
  const fd = symbols.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new Error("sd_notify: socket(AF_UNIX, SOCK_DGRAM) failed");
  try {
    const sent = Number(symbols.sendto(fd, ptr(msg), msg.length, 0, ptr(addr), addrLen));
    if (sent !== msg.length) throw new Error(`sd_notify: could not send to ${target}`);
  } finally {
    symbols.close(fd);
  }
  return true;
}
