/**
 * Sieve (RFC 5228), our own: the lexer, the parser and the validator (`compile`: errors with line and
 * column), and the interpreter of the core and the common extensions (`run`: pure, the actions out).
 */
export { datePart } from './date.ts';
export { SieveError, SieveRuntimeError } from './errors.ts';
export {
  type Action,
  type BodyTransform,
  type HeaderEdits,
  type RunOptions,
  run,
  type SieveEnvelope,
  type SieveMessage,
  type Vacation,
} from './interpret.ts';
export { MAX_NUMBER, type Token, tokenize } from './lexer.ts';
export { wildcardCaptures, wildcardMatch } from './match.ts';
export { type Argument, type Command, type ParseOptions, parse, type Test } from './parser.ts';
export { compile, DATE_PARTS, EXTENSIONS, MAX_SCRIPT_SIZE, scriptNameProblem } from './validate.ts';
