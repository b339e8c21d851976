/** A script that does not parse or validate: what is wrong and where (1-based line and column). */
export class SieveError extends Error {
  readonly line: number;
  readonly column: number;
  readonly reason: string;

  constructor(reason: string, line: number, column: number) {
    super(`line ${line}, column ${column}: ${reason}`);
    this.reason = reason;
    this.line = line;
    this.column = column;
  }
}

/** A script that fails while it runs (an extension not run, a bound reached): the caller keeps the message. */
export class SieveRuntimeError extends Error {}
