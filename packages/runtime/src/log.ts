/** Structured log lines on stderr: one JSON object per line, with the time and level first. */
export type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  log(level: Level, msg: string, fields?: Record<string, unknown>): void;
  error(err: unknown, context: string): void;
  /** The least level written from now on (log_level, reloadable). */
  setLevel?(level: Level): void;
}

export function createLogger(
  minimum: Level,
  component: string,
  out: NodeJS.WritableStream = process.stderr,
): Logger {
  let least = minimum;
  const logger: Logger = {
    setLevel(level) {
      least = level;
    },
    log(level, msg, fields = {}) {
      if (ORDER[level] < ORDER[least]) return;
      out.write(`${JSON.stringify({ time: new Date().toISOString(), level, component, msg, ...fields })}\n`);
    },
    error(err, context) {
      logger.log('error', context, {
        error: err instanceof Error ? (err.stack ?? err.message) : String(err),
      });
    },
  };
  return logger;
}
