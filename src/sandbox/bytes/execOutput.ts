// Output handling shared by the backends: a per-stream byte cap that keeps draining, Docker's multiplexed
// exec stream, and utf-8 decoding as Python's `bytes.decode("utf-8", errors="replace")` does it (what both
// reference harnesses call): invalid bytes and a character cut by the cap become U+FFFD, a leading BOM stays.

export const DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024;

/** Keeps the first `cap` bytes written to it and counts (then drops) the rest. */
export interface CappedBuffer {
  push(chunk: Buffer): void;
  readonly truncated: boolean;
  /** The kept bytes decoded as Python decodes them (see decodeUtf8): a character cut by the cap is one U+FFFD. */
  text(): string;
}

export function cappedBuffer(cap: number): CappedBuffer {
  const kept: Buffer[] = [];
  let size = 0;
  let truncated = false;
  return {
    push(chunk) {
      if (chunk.length === 0) return;
      const room = cap - size;
      if (room <= 0) {
        truncated = true;
        return;
      }
      // Copy: a small slice must not pin the (up to 64 KiB) socket chunk it came from.
      const take = chunk.length <= room ? chunk : chunk.subarray(0, room);
      kept.push(Buffer.from(take));
      size += take.length;
      if (take.length < chunk.length) truncated = true;
    },
    get truncated() {
      return truncated;
    },
    text() {
      return decodeUtf8(Buffer.concat(kept, size));
    },
  };
}

// ignoreBOM: a TextDecoder otherwise drops a leading U+FEFF, which Python's utf-8 codec keeps.
const decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

/**
 * Python's `bytes.decode("utf-8", errors="replace")`: one U+FFFD per maximal invalid subpart (the WHATWG
 * decoder and CPython agree on that), an unfinished sequence at the end is one U+FFFD, a BOM is a character.
 */
export function decodeUtf8(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

/**
 * Parses Docker's multiplexed attach stream (8-byte header: stream type, 3 zero bytes, big-endian length)
 * without buffering payloads: each payload slice goes straight to `onFrame`, however the chunks split it.
 */
export function demuxer(onFrame: (stream: "stdout" | "stderr", data: Buffer) => void): (chunk: Buffer) => void {
  const header = Buffer.alloc(8);
  let headerFill = 0;
  let remaining = 0;
  let stream: "stdout" | "stderr" = "stdout";
  return (chunk) => {
    let offset = 0;
    while (offset < chunk.length) {
      if (remaining === 0) {
        const n = Math.min(8 - headerFill, chunk.length - offset);
        chunk.copy(header, headerFill, offset, offset + n);
        headerFill += n;
        offset += n;
        if (headerFill === 8) {
          headerFill = 0;
          // 2 = stderr, 3 = engine-side error text; 0/1 = stdin/stdout.
          stream = header[0] >= 2 ? "stderr" : "stdout";
          remaining = header.readUInt32BE(4);
        }
        continue;
      }
      const n = Math.min(remaining, chunk.length - offset);
      onFrame(stream, chunk.subarray(offset, offset + n));
      offset += n;
      remaining -= n;
    }
  };
}
