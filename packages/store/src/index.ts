export * from './address.ts';
export * from './errors.ts';
export * from './flags.ts';
export * from './lazy.ts';
export * from './mailbox-name.ts';
export * from './resolve.ts';
export * from './rules.ts';
export * from './types.ts';
