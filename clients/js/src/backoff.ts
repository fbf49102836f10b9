export interface BackoffOptions {
  /** The first retry waits up to this long. */
  initialDelayMs: number;
  /** No retry waits longer than this. */
  maxDelayMs: number;
  /** Growth of the ceiling per attempt. */
  factor: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialDelayMs: 250, maxDelayMs: 15_000, factor: 2 };

/**
 * Exponential backoff with full jitter: attempt `n` (0-based) waits a uniformly
 * random time in [0, min(max, initial * factor^n)], so clients that lost
 * their connection together do not come back together.
 */
export function backoffDelay(attempt: number, options: BackoffOptions, random: () => number = Math.random): number {
  const ceiling = Math.min(options.maxDelayMs, options.initialDelayMs * options.factor ** Math.max(0, attempt));
  return Math.floor(random() * ceiling);
}
