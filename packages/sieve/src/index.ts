/**
 * Sieve (RFC 5228), our own: the lexer, the parser and the validator so far; scripts are checked with
 * line and column (`compile`). The interpreter comes next (issue: mail filtering).
 */
export { SieveError } from './errors.ts';
export { MAX_NUMBER, type Token, tokenize } from './lexer.ts';
export { type Argument, type Command, type ParseOptions, parse, type Test } from './parser.ts';
export { compile, EXTENSIONS } from './validate.ts';
