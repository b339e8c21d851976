import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const BIN = join(import.meta.dirname, '..', '..', '..', 'bin', 'mailwerk');

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Sandbox {
  dir: string;
  config: string;
  /** Runs the real `mailwerk` binary against this sandbox's config, feeding `input` on stdin. */
  run(args: string[], input?: string): Promise<Result>;
  /** Like run, but fails the test unless the exit status is 0, and parses --json output. */
  json<T = unknown>(args: string[], input?: string): Promise<T>;
  cleanup(): Promise<void>;
}

export async function sandbox(): Promise<Sandbox> {
  const dir = await mkdtemp(join(tmpdir(), 'mailwerk-cli-'));
  const config = join(dir, 'mailwerk.toml');
  const run = (args: string[], input = ''): Promise<Result> =>
    new Promise((resolve, reject) => {
      const child = spawn(BIN, args, {
        cwd: dir,
        env: { PATH: process.env.PATH, HOME: dir, MAILWERK_CONFIG: config },
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => {
        stdout += d;
      });
      child.stderr.on('data', (d) => {
        stderr += d;
      });
      child.on('error', reject);
      child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
      child.stdin.end(input);
    });
  const sb: Sandbox = {
    dir,
    config,
    run,
    async json<T>(args: string[], input?: string) {
      const r = await run(['--json', ...args], input);
      if (r.code !== 0) throw new Error(`mailwerk ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
      return JSON.parse(r.stdout) as T;
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
  return sb;
}
