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
