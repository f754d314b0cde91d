// Streams a JSONL file line by line with each line's byte offset, without holding more than one read
// buffer (plus the longest line) in memory. Files are opened below a root without following links. The offsets let a viewer later open one record by seeking.
import { openUnder } from "../results/safeRead.js";

export interface JsonlLine {
  /** 1-based line number */
  lineNo: number;
  /** byte offset of the line's first byte */
  offset: number;
  /** bytes, without the newline */
  length: number;
  text: string;
}

const CHUNK = 8 * 1024 * 1024;

/**
 * Calls `onLine` for every non-empty line (a last line without newline included: that is how a truncated
 * file ends). `onProgress` receives bytes read so far. The callback may not keep `text` beyond its call
 * if memory matters: it is a fresh string each time, so keeping it is allowed but costs memory.
 */
export async function scanJsonl(
  file: string,
  root: string,
  onLine: (line: JsonlLine) => void,
  onProgress?: (bytesRead: number) => void,
): Promise<{ bytes: number; lines: number }> {
  const fh = await openUnder(root, file);
  try {
    let buf = Buffer.allocUnsafe(CHUNK);
    let filled = 0; // bytes of buf holding data
    let bufStart = 0; // file offset of buf[0]
    let lineNo = 0;
    let total = 0;
    let eof = false;
    while (!eof) {
      if (filled === buf.length) {
        // one line longer than the buffer: grow it
        const bigger = Buffer.allocUnsafe(buf.length * 2);
        buf.copy(bigger, 0, 0, filled);
        buf = bigger;
      }
      const { bytesRead } = await fh.read(buf, filled, buf.length - filled, bufStart + filled);
      if (bytesRead === 0) eof = true;
      filled += bytesRead;
      total += bytesRead;
      let pos = 0;
      for (;;) {
        const nl = buf.indexOf(10, pos);
        if (nl === -1 || nl >= filled) break;
        lineNo++;
        emit(buf, pos, nl, bufStart, lineNo, onLine);
        pos = nl + 1;
      }
      if (eof && pos < filled) {
        lineNo++;
        emit(buf, pos, filled, bufStart, lineNo, onLine);
        pos = filled;
      }
      // keep the partial line at the start of the buffer
      if (pos > 0) {
        buf.copy(buf, 0, pos, filled);
        filled -= pos;
        bufStart += pos;
      }
      onProgress?.(total);
    }
    return { bytes: total, lines: lineNo };
  } finally {
    await fh.close();
  }
}

function emit(buf: Buffer, start: number, end: number, bufStart: number, lineNo: number, onLine: (l: JsonlLine) => void) {
  let e = end;
  if (e > start && buf[e - 1] === 13) e--; // CRLF
  if (e === start) return;
  onLine({ lineNo, offset: bufStart + start, length: e - start, text: buf.toString("utf8", start, e) });
}

/** Reads `length` bytes at `offset` of `file` (below `root`, see results/safeRead.ts) as UTF-8 (one JSONL record). */
export async function readRange(file: string, root: string, offset: number, length: number): Promise<string> {
  const fh = await openUnder(root, file);
  try {
    const buf = Buffer.allocUnsafe(length);
    const { bytesRead } = await fh.read(buf, 0, length, offset);
    return buf.toString("utf8", 0, bytesRead);
  } finally {
    await fh.close();
  }
}
