/** Human tables and --json output. */
import type { Context } from './context.ts';

export function printTable(ctx: Context, headers: string[], rows: string[][]): void {
  if (rows.length === 0) return;
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  ctx.print(line(headers));
  for (const r of rows) ctx.print(line(r));
}

export function printJson(ctx: Context, value: unknown): void {
  ctx.print(JSON.stringify(value, null, 2));
}
