/** Generates the documented sample file from the schema (`mailwerk config sample`). */
import { z } from 'zod';
import { envName, type JsonSchema, typesOf } from './load.ts';
import { configSchema } from './schema.ts';

function wrap(text: string, width = 78): string[] {
  const lines: string[] = [];
  let line = '#';
  for (const word of text.split(/\s+/)) {
    if (line.length + word.length + 1 > width && line !== '#') {
      lines.push(line);
      line = '#';
    }
    line += ` ${word}`;
  }
  lines.push(line);
  return lines;
}

function tomlValue(v: unknown): string {
  return typeof v === 'string' || Array.isArray(v) ? JSON.stringify(v) : String(v);
}

function describeKey(key: string, node: JsonSchema, path: string[]): string[] {
  const out = wrap(node.description ?? '');
  const types = typesOf(node);
  const allowed = node.enum
    ? `one of ${node.enum.map((e) => JSON.stringify(e)).join(', ')}`
    : types.join(' or ');
  out.push(`# Type: ${allowed}. Environment: ${envName(path)}.`);
  out.push(node.default !== undefined ? `${key} = ${tomlValue(node.default)}` : `# ${key} =`);
  return out;
}

export function sampleConfig(): string {
  const json = z.toJSONSchema(configSchema, { io: 'input' }) as JsonSchema;
  const lines = [
    '# Mailwerk configuration (TOML).',
    '# Generated from the schema by `mailwerk config sample`: every key, its meaning and its default.',
    '# Any key can be overridden by an environment variable, named below each key.',
    '',
  ];
  // Tables: a section's own keys first, then its sub-tables ([mta.relay_host]); a table of free keys
  // (a record, such as mta.routes) is written empty, its description saying what goes in it.
  const table = (path: string[], node: JsonSchema) => {
    lines.push(...wrap(node.description ?? ''), `[${path.join('.')}]`);
    const subs: Array<[string, JsonSchema]> = [];
    for (const [key, child] of Object.entries(node.properties ?? {})) {
      if (child.type === 'object') subs.push([key, child]);
      else lines.push(...describeKey(key, child, [...path, key]));
    }
    if (!node.properties) lines.push(`# Environment: ${envName(path)} (as JSON).`);
    lines.push('');
    for (const [key, child] of subs) table([...path, key], child);
  };
  for (const [key, node] of Object.entries(json.properties ?? {})) {
    if (node.type !== 'object') lines.push(...describeKey(key, node, [key]), '');
  }
  for (const [key, node] of Object.entries(json.properties ?? {}))
    if (node.type === 'object') table([key], node);
  return lines.join('\n');
}
