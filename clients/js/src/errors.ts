import { ERROR_CODES, type ErrorCode } from "./generated/protocol.js";

/**
 * Codes the SDK itself uses, beside the server's (`ErrorCode`):
 * `timeout` (no answer in time), `network` (the request never reached a
 * gateway), `closed` (the client was closed first), `protocol` (the server
 * sent something unexpected).
 */
export type LocalErrorCode = "timeout" | "network" | "closed" | "protocol";

/** An error from the gateway (an error frame or HTTP error body) or from the SDK. */
export class ChatError extends Error {
  /** The server's error code, or one of the SDK's own. */
  readonly code: ErrorCode | LocalErrorCode | (string & {});
  /** True when the same request may succeed if made again later. */
  readonly retryable: boolean;
  /** The HTTP status, for HTTP requests. */
  readonly status: number | undefined;

  constructor(
    code: ErrorCode | LocalErrorCode | (string & {}),
    message: string,
    options: { retryable?: boolean; status?: number; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "ChatError";
    this.code = code;
    this.retryable = options.retryable ?? isRetryableCode(code);
    this.status = options.status;
  }
}

/** Whether the error table says a request that failed with `code` may succeed later. */
export function isRetryableCode(code: string): boolean {
  if (code === "timeout" || code === "network") return true;
  const spec = (ERROR_CODES as Record<string, { retryable: boolean } | undefined>)[code];
  return spec?.retryable ?? false;
}
