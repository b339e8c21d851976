/**
 * Builds the JavaScript the service processes run: every workspace
 * package's src/**.ts, types stripped (Node's own stripTypeScriptTypes: the
 * sources use only erasable syntax), written to dist/ beside it with relative
 * imports pointing at .js. Packages expose it under the "mailwerk-js" export
 * condition, so `node --conditions=mailwerk-js` resolves @mailwerk/* to it.
 *
 * Why: Node strips types at load time with a WebAssembly compiler that costs
 * each process about 12 MB; the supervised services of `mailwerk start` are
 * four processes, and a small server's memory matters more than a build step.
 * Development, tests and the CLI keep running the TypeScript directly.
 *
 * `mailwerk start` builds when a source changed since the last build (a
 * stamp of every source file's size and time), before it starts the services;
 * `node packages/runtime/src/build.ts [--force]` does the same by hand.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

/** The repository: this file is packages/runtime/src/build.ts (or dist/build.js). */
const ROOT = join(import.meta.dirname, '..', '..', '..');

/** Every workspace package with a src/ directory. */
function packages(): string[] {
  const out: string[] = [];
  for (const group of ['apps', 'packages']) {
    for (const name of readdirSync(join(ROOT, group))) {
      const dir = join(ROOT, group, name);
      try {
        if (statSync(join(dir, 'src')).isDirectory()) out.push(dir);
      } catch {
        /* not a package with sources */
      }
    }
  }
  return out;
}

function sources(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) sources(p, out);
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Relative specifiers that name a .ts file, in import and export statements and dynamic imports. */
const SPECIFIER = /((?:\bfrom|\bimport)\s*\(?\s*['"])(\.{1,2}\/[^'"\n]+?)\.ts(['"])/g;

/** Strips the types of one file. (node:module is imported only here: naming its stripTypeScriptTypes loads the compiler.) */
export async function transform(code: string, file: string): Promise<string> {
  const { stripTypeScriptTypes } = await import('node:module');
  const js = stripTypeScriptTypes(code, { mode: 'strip', sourceUrl: file });
  return js.replace(SPECIFIER, '$1$2.js$3');
}

/** A stamp of the sources: changes whenever a file is added, removed, resized or touched. */
function stamp(files: string[]): string {
  const h = createHash('sha256');
  for (const f of files.sort()) {
    const s = statSync(f);
    h.update(`${relative(ROOT, f)}\0${s.size}\0${s.mtimeMs}\n`);
  }
  return h.digest('hex');
}

const STAMP = join(ROOT, 'node_modules', '.mailwerk-build-stamp');

/** Builds what is stale (or everything with `force`); returns whether it built. */
export async function build(force = false): Promise<boolean> {
  const pkgs = packages();
  const all = pkgs.flatMap((p) => sources(join(p, 'src')));
  const now = stamp(all);
  let previous = '';
  try {
    previous = readFileSync(STAMP, 'utf8');
  } catch {
    /* never built */
  }
  if (!force && previous === now) return false;
  for (const p of pkgs) {
    const dist = join(p, 'dist');
    rmSync(dist, { recursive: true, force: true });
    for (const file of sources(join(p, 'src'))) {
      const out = join(dist, relative(join(p, 'src'), file)).replace(/\.ts$/, '.js');
      mkdirSync(dirname(out), { recursive: true });
      writeFileSync(out, await transform(readFileSync(file, 'utf8'), file));
    }
  }
  writeFileSync(STAMP, now);
  return true;
}

if (import.meta.main) {
  const t = performance.now();
  const built = await build(process.argv.includes('--force'));
  if (!process.argv.includes('--quiet'))
    process.stderr.write(
      built
        ? `mailwerk: built dist/ in ${Math.round(performance.now() - t)} ms\n`
        : 'mailwerk: dist/ is up to date\n',
    );
}
