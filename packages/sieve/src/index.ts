/**
 * Sieve (RFC 5228), our own: the lexer, the parser and the validator (`compile`: errors with line and
 * column), and the interpreter of the core and the common extensions (`run`: pure, the actions out).
 */
export { SieveError } from './errors.ts';
export {
  type Action,
  datePart,
  type RunOptions,
  run,
  type SieveEnvelope,
  type SieveMessage,
  SieveRuntimeError,
  type Vacation,
  wildcardMatch,
} from './interpret.ts';
export { MAX_NUMBER, type Token, tokenize } from './lexer.ts';
export { type Argument, type Command, type ParseOptions, parse, type Test } from './parser.ts';
export { compile, DATE_PARTS, EXTENSIONS, scriptNameProblem } from './validate.ts';
