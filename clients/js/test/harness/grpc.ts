// A minimal unary gRPC client over node:http2 with hand-encoded Protobuf,
// enough for the few chat service calls the tests make to set up channels
// and messages straight in the chat service, without a user's token.

import { connect, type ClientHttp2Session } from "node:http2";

const sessions = new Map<string, ClientHttp2Session>();

function session(addr: string): ClientHttp2Session {
  const existing = sessions.get(addr);
  if (existing && !existing.closed && !existing.destroyed) return existing;
  const created = connect(`http://${addr}`);
  created.on("error", () => sessions.delete(addr));
  created.on("close", () => sessions.delete(addr));
  created.unref();
  sessions.set(addr, created);
  return created;
}

/** Closes the connections the calls opened. */
export function closeGrpc(): void {
  for (const s of sessions.values()) s.close();
  sessions.clear();
}

type Field = { no: number; wire: 0; value: number } | { no: number; wire: 2; value: Uint8Array };

function varint(n: number): number[] {
  const out: number[] = [];
  let v = BigInt(n);
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return out;
}

export const pb = {
  string(no: number, value: string): Field {
    return { no, wire: 2, value: new TextEncoder().encode(value) };
  },
  varint(no: number, value: number): Field {
    return { no, wire: 0, value };
  },
  encode(fields: Field[]): Uint8Array {
    const bytes: number[] = [];
    for (const f of fields) {
      bytes.push(...varint((f.no << 3) | f.wire));
      if (f.wire === 0) bytes.push(...varint(f.value));
      else {
        bytes.push(...varint(f.value.length));
        bytes.push(...f.value);
      }
    }
    return Uint8Array.from(bytes);
  },
};

/** A call that ended with a gRPC status other than OK. */
export class GrpcError extends Error {
  constructor(
    readonly path: string,
    readonly status: number,
    readonly statusMessage: string,
  ) {
    super(`gRPC ${path} failed: status ${status} ${statusMessage}`);
  }

  /** RESOURCE_EXHAUSTED and UNAVAILABLE: the same call may succeed later. */
  get retryable(): boolean {
    return this.status === 8 || this.status === 14;
  }
}

/** Calls `path` on the gRPC server at `addr` (host:port) with `fields`; resolves with the response bytes. */
export function grpcUnary(addr: string, path: string, fields: Field[], timeoutMs = 10_000): Promise<Buffer> {
  const message = pb.encode(fields);
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt8(0, 0);
  frame.writeUInt32BE(message.length, 1);
  Buffer.from(message).copy(frame, 5);
  return new Promise((resolve, reject) => {
    const req = session(addr).request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
    });
    const timer = setTimeout(() => {
      req.close();
      reject(new Error(`gRPC ${path}: no answer in ${timeoutMs}ms`));
    }, timeoutMs);
    const chunks: Buffer[] = [];
    let status: string | undefined;
    let statusMessage = "";
    req.on("response", (headers) => {
      if (headers["grpc-status"] !== undefined) {
        status = String(headers["grpc-status"]);
        statusMessage = decodeURIComponent(String(headers["grpc-message"] ?? ""));
      }
    });
    req.on("trailers", (trailers) => {
      status = String(trailers["grpc-status"]);
      statusMessage = decodeURIComponent(String(trailers["grpc-message"] ?? ""));
    });
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      clearTimeout(timer);
      if (status !== "0") {
        reject(new GrpcError(path, Number(status), statusMessage));
        return;
      }
      const body = Buffer.concat(chunks);
      resolve(body.subarray(5));
    });
    req.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.end(frame);
  });
}
