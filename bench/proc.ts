// What processes cost, read from /proc (Linux).
import { readdirSync, readFileSync } from 'node:fs';

/**
 * PSS of one process in KiB: pages shared between processes (Node's code,
 * the code of Postfix's many smtpd processes) split among them, where RSS
 * would count them once per process. 0 for a process that is gone.
 */
export function pssKiB(pid: number): number {
  try {
    return Number(/^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** The pids of the trees under `roots`, roots included. */
export function processTree(roots: number[]): number[] {
  const children = new Map<number, number[]>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(e)]);
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const todo = [...roots];
  while (todo.length) {
    const pid = todo.pop()!;
    out.push(pid);
    todo.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** PSS summed over the trees under `roots`, in MiB. */
export const treePssMiB = (roots: number[]): number =>
  processTree(roots).reduce((sum, pid) => sum + pssKiB(pid), 0) / 1024;
