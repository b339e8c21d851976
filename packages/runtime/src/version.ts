/** Mailwerk's version: the one of the `mailwerk` command's package (apps/cli), for --version, status and /status. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** This file is packages/runtime/src/version.ts (or dist/version.js): the repository is three levels up. */
const PACKAGE = join(import.meta.dirname, '..', '..', '..', 'apps', 'cli', 'package.json');

export const mailwerkVersion = (): string =>
  (JSON.parse(readFileSync(PACKAGE, 'utf8')) as { version: string }).version;
