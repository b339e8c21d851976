/** When to try again: quick at first (an MDA restart), then backing off to hours. */
const STEPS_MS = [
  30_000, 60_000, 120_000, 300_000, 600_000, 1_200_000, 2_400_000, 3_600_000, 7_200_000, 14_400_000,
];

export interface RetryPolicy {
  /** Delay before the attempt after `attempts` failed ones. */
  delayMs(attempts: number): number;
  /** How long a message may stay queued before it bounces (RFC 5321 §4.5.4.1 suggests 4–5 days). */
  maxAgeMs: number;
}

export const defaultRetryPolicy: RetryPolicy = {
  delayMs: (attempts) => STEPS_MS[Math.min(Math.max(attempts, 1), STEPS_MS.length) - 1]!,
  maxAgeMs: 5 * 86_400_000,
};

/** Remote delivery (RFC 5321 §4.5.4.1: at least 30 minutes apart is suggested; we start at 5): 5 min doubling to 4 h, for 5 days. */
export function remoteRetryPolicy(
  firstMs = 300_000,
  maxMs = 14_400_000,
  maxAgeMs = 5 * 86_400_000,
): RetryPolicy {
  return {
    delayMs: (attempts) => Math.min(maxMs, firstMs * 2 ** Math.max(0, attempts - 1)),
    maxAgeMs,
  };
}

export const defaultRemoteRetryPolicy: RetryPolicy = remoteRetryPolicy();
