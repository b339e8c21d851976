/**
 * Mailboxes in and out: `mailwerk import USER PATH` from a Maildir (as
 * Dovecot writes it) or an mbox file, `mailwerk export USER DIR` to a
 * Maildir Dovecot reads.
 *
 * Maildir, as Dovecot lays it out (doc.dovecot.org, Maildir): the INBOX in
 * PATH itself (cur/, new/), other folders in Maildir++ directories `.Sent`,
 * `.Work.Projects` (the separator "."), or with LAYOUT=fs in nested
 * directories `Work/Projects`; names in modified UTF-7 (RFC 3501 §5.1.3).
 * A message's flags are the letters after `:2,` in its file name (D draft,
 * F flagged, P passed, R replied, S seen, T trashed), its keywords the
 * letters a–z, numbered by the folder's `dovecot-keywords` file; its
 * INTERNALDATE is the file's modification time.
 *
 * mbox (RFC 4155): messages start at a line "From " after an empty line (or
 * at the file's start); ">From " lines written for the body's own "From "
 * lines are unquoted (mboxrd: one ">" less at any depth); Dovecot's and
 * mutt's Status:/X-Status: lines give the flags.
 *
 * Both stream: one message in memory at a time, whatever the mailbox's size.
 * Both are idempotent: each message is appended with a delivery key made of
 * where it came from (the Maildir file's unique name, or the mbox file's
 * name and the message's hash and position), so a second run adds nothing.
 */
import { createReadStream, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, open, readFile, rename, stat, utimes, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { createInterface } from 'node:readline';
import { decodeMutf7, encodeMutf7 } from '@mailwerk/imap';
import { imapClient } from '@mailwerk/mda';
import { parseMessage } from '@mailwerk/mime';
import { contentId, isStoreError, type Mailbox, type MailStore } from '@mailwerk/store';

/** What one run did, and where it is now (for the progress bar and the summary). */
export interface Progress {
  folder: string;
  messages: number;
  bytes: number;
  added: number;
  skipped: number;
  failed: number;
  /** Where the source says up front what a folder holds (IMAP): how far this folder is, of how much. */
  inFolder?: { messages: number; bytes: number; totalMessages: number; totalBytes: number };
}

export type OnProgress = (p: Progress) => void;

const MAILDIR_FLAGS: Record<string, string> = {
  D: '\\Draft',
  F: '\\Flagged',
  P: '$Forwarded',
  R: '\\Answered',
  S: '\\Seen',
  T: '\\Deleted',
};

/** The folders of a Maildir: [mailbox name, directory], INBOX first. */
function maildirFolders(root: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const isMaildir = (d: string) => existsSync(join(d, 'cur')) || existsSync(join(d, 'new'));
  if (isMaildir(root)) out.push(['INBOX', root]);
  const walkFs = (dir: string, prefix: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (!e.isDirectory() || ['cur', 'new', 'tmp'].includes(e.name) || e.name.startsWith('.')) continue;
      const path = join(dir, e.name);
      const name = prefix ? `${prefix}/${decodeMutf7(e.name)}` : decodeMutf7(e.name);
      if (isMaildir(path)) out.push([name, path]);
      walkFs(path, name);
    }
  };
  for (const e of readdirSync(root, { withFileTypes: true })) {
    if (!e.isDirectory()) continue;
    // Maildir++: ".Work.Projects" is Work/Projects.
    if (e.name.startsWith('.') && e.name !== '.' && e.name !== '..' && isMaildir(join(root, e.name)))
      out.push([e.name.slice(1).split('.').map(decodeMutf7).join('/'), join(root, e.name)]);
  }
  // LAYOUT=fs: folders are nested directories beside cur/ new/ tmp/.
  walkFs(root, '');
  return out;
}

/** Flags and keywords from a Maildir file name (`…:2,FRSab`), keywords named by dovecot-keywords. */
export function maildirFlags(file: string, keywords: Map<string, string>): string[] {
  const info = /:2,([A-Za-z]*)$/.exec(file)?.[1] ?? '';
  const flags: string[] = [];
  for (const c of info) {
    if (MAILDIR_FLAGS[c]) flags.push(MAILDIR_FLAGS[c]);
    else if (c >= 'a' && c <= 'z') {
      const k = keywords.get(String(c.charCodeAt(0) - 97));
      if (k) flags.push(k);
    }
  }
  return flags;
}

/** dovecot-keywords: "N keyword" lines, N from 0 (letter a) to 25 (z). */
function readKeywords(dir: string): Map<string, string> {
  const map = new Map<string, string>();
  const path = join(dir, 'dovecot-keywords');
  if (!existsSync(path)) return map;
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = /^(\d+) (\S+)$/.exec(line.trim());
    if (m) map.set(m[1]!, m[2]!);
  }
  return map;
}

/** Bare LF line ends (as Dovecot writes Maildir files) as CRLF, the line end IMAP serves. */
export function crlf(raw: Buffer): Buffer {
  let bare = false;
  for (let i = raw.indexOf(10); i >= 0; i = raw.indexOf(10, i + 1))
    if (i === 0 || raw[i - 1] !== 13) {
      bare = true;
      break;
    }
  if (!bare) return raw;
  return Buffer.from(raw.toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1');
}

async function mailboxFor(store: MailStore, accountId: string, name: string): Promise<Mailbox> {
  return (
    (await store.getMailbox(accountId, name)) ??
    (await store.createMailbox(accountId, name, { subscribed: true }))
  );
}

/** Appends one message; false when an earlier run brought it already (its delivery key exists). */
async function add(
  store: MailStore,
  box: Mailbox,
  raw: Buffer,
  flags: string[],
  internalDate: Date,
  key: string,
): Promise<boolean> {
  try {
    await store.appendMessage({
      accountId: box.accountId,
      mailboxId: box.id,
      data: raw,
      size: raw.length,
      structure: parseMessage(raw),
      flags,
      internalDate,
      enforceQuota: false,
      deliveryKey: key,
    });
    return true;
  } catch (err) {
    if (isStoreError(err, 'exists')) return false;
    throw err;
  }
}

export async function importMaildir(
  store: MailStore,
  accountId: string,
  root: string,
  onProgress: OnProgress,
  into?: string,
): Promise<Progress> {
  const p: Progress = { folder: '', messages: 0, bytes: 0, added: 0, skipped: 0, failed: 0 };
  for (const [folder, dir] of maildirFolders(root)) {
    const name = into ? (folder === 'INBOX' ? into : `${into}/${folder}`) : folder;
    p.folder = name;
    const box = await mailboxFor(store, accountId, name);
    const keywords = readKeywords(dir);
    for (const sub of ['cur', 'new']) {
      const d = join(dir, sub);
      if (!existsSync(d)) continue;
      for (const file of readdirSync(d).sort()) {
        const path = join(d, file);
        const st = statSync(path);
        if (!st.isFile()) continue;
        const raw = crlf(await readFile(path));
        p.messages++;
        p.bytes += raw.length;
        // The unique part of the name (before ":2,"), which Dovecot keeps when flags change.
        const unique = file.replace(/:2,.*$/, '');
        if (
          await add(
            store,
            box,
            raw,
            maildirFlags(file, keywords),
            st.mtime,
            `import:maildir:${name}:${unique}`,
          )
        )
          p.added++;
        else p.skipped++;
        onProgress(p);
      }
    }
  }
  return p;
}

/** Flags from mbox Status: (R read, O old) and X-Status: (A answered, F flagged, T draft, D deleted) lines. */
function mboxFlags(raw: Buffer): string[] {
  const end = raw.indexOf('\n\n') >= 0 ? raw.indexOf('\n\n') : raw.indexOf('\r\n\r\n');
  const head = raw.subarray(0, end < 0 ? raw.length : end).toString('latin1');
  const status = /^Status:\s*(\S*)/im.exec(head)?.[1] ?? '';
  const x = /^X-Status:\s*(\S*)/im.exec(head)?.[1] ?? '';
  const flags: string[] = [];
  if (status.includes('R')) flags.push('\\Seen');
  if (x.includes('A')) flags.push('\\Answered');
  if (x.includes('F')) flags.push('\\Flagged');
  if (x.includes('T')) flags.push('\\Draft');
  if (x.includes('D')) flags.push('\\Deleted');
  return flags;
}

/** The date of an mbox "From sender date" line, or now. */
function fromLineDate(line: string): Date {
  const m = /^From \S+\s+(.+)$/.exec(line);
  const d = m ? new Date(m[1]!.trim()) : null;
  return d && !Number.isNaN(d.getTime()) ? d : new Date();
}

export async function importMbox(
  store: MailStore,
  accountId: string,
  file: string,
  onProgress: OnProgress,
  into?: string,
  maxMessageSize = 64 * 1024 * 1024,
): Promise<Progress> {
  const name = into ?? basename(file).replace(/\.mbox$/i, '');
  const box = await mailboxFor(store, accountId, name === 'Inbox' || name === 'inbox' ? 'INBOX' : name);
  const p: Progress = { folder: box.name, messages: 0, bytes: 0, added: 0, skipped: 0, failed: 0 };
  // latin1: one character per byte, so every message keeps its bytes whatever its charset.
  const lines = createInterface({
    input: createReadStream(file, { encoding: 'latin1' }),
    crlfDelay: Number.POSITIVE_INFINITY,
  });
  let current: Buffer[] | null = null;
  let size = 0;
  let fromLine = '';
  let previousBlank = true;
  let position = 0;
  const finish = async () => {
    if (!current) return;
    // The line break before the next "From " belongs to the separator, not the message.
    if (current.length && current[current.length - 1]!.length === 2) current.pop();
    const raw = Buffer.concat(current);
    position++;
    p.messages++;
    p.bytes += raw.length;
    if (size > maxMessageSize) p.failed++;
    else if (
      await add(
        store,
        box,
        raw,
        mboxFlags(raw),
        fromLineDate(fromLine),
        `import:mbox:${basename(file)}:${position}:${contentId(raw)}`,
      )
    )
      p.added++;
    else p.skipped++;
    onProgress(p);
  };
  for await (const line of lines) {
    if (line.startsWith('From ') && previousBlank) {
      await finish();
      current = [];
      size = 0;
      fromLine = line;
      previousBlank = false;
      continue;
    }
    previousBlank = line === '';
    if (!current) continue; // Before the first "From " line: not a message.
    // mboxrd: ">From ", ">>From " … lose one ">".
    const text = /^>+From /.test(line) ? line.slice(1) : line;
    // Past the limit the rest is only counted, so one huge message cannot fill the memory.
    size += text.length + 2;
    if (size <= maxMessageSize) current.push(Buffer.from(`${text}\r\n`, 'latin1'));
  }
  await finish();
  return p;
}

/** Maildir flag letters for our flags, and the keywords as letters numbered in `keywords`. */
function maildirInfo(flags: string[], keywords: string[]): string {
  const letters: string[] = [];
  for (const [letter, flag] of Object.entries(MAILDIR_FLAGS)) if (flags.includes(flag)) letters.push(letter);
  for (const f of flags) {
    if (f.startsWith('\\') || Object.values(MAILDIR_FLAGS).includes(f)) continue;
    let i = keywords.indexOf(f);
    if (i < 0 && keywords.length < 26) i = keywords.push(f) - 1;
    if (i >= 0) letters.push(String.fromCharCode(97 + i));
  }
  return letters.sort().join('');
}

/** Writes the account's mailboxes to a Maildir Dovecot reads (Maildir++ folders); a second run adds only what is new. */
export async function exportMaildir(
  store: MailStore,
  accountId: string,
  root: string,
  onProgress: OnProgress,
): Promise<Progress> {
  const p: Progress = { folder: '', messages: 0, bytes: 0, added: 0, skipped: 0, failed: 0 };
  for (const box of await store.listMailboxes(accountId)) {
    p.folder = box.name;
    const dir =
      box.name === 'INBOX' ? root : join(root, `.${box.name.split('/').map(encodeMutf7).join('.')}`);
    for (const sub of ['cur', 'new', 'tmp']) await mkdir(join(dir, sub), { recursive: true, mode: 0o700 });
    const keywordsFile = join(dir, 'dovecot-keywords');
    const keywords: string[] = [];
    if (existsSync(keywordsFile)) for (const [i, k] of readKeywords(dir)) keywords[Number(i)] = k;
    const known = new Set(readdirSync(join(dir, 'cur')).map((f) => f.replace(/:2,.*$/, '')));
    const before = keywords.length;
    // In batches of UIDs, so a mailbox of any size costs one batch of rows at a time.
    const uids = await store.listUids(box.id);
    for (let i = 0; i < uids.length; i += 500)
      for (const m of await store.listMessageMeta(box.id, {
        uidFrom: uids[i]!,
        uidTo: uids[Math.min(i + 500, uids.length) - 1]!,
      })) {
        p.messages++;
        p.bytes += m.size;
        // Unique per message of this store: the mailbox's UIDVALIDITY and the UID.
        const unique = `${Math.floor(m.internalDate.getTime() / 1000)}.M${m.uid}V${box.uidValidity}.mailwerk,S=${m.size}`;
        if (known.has(unique)) {
          p.skipped++;
          onProgress(p);
          continue;
        }
        const path = join(dir, 'cur', `${unique}:2,${maildirInfo(m.flags, keywords)}`);
        // Written under tmp/ and moved into cur/ (the Maildir rule: a reader never sees half a message).
        const tmp = join(dir, 'tmp', unique);
        await writeFile(tmp, await store.blobs.get(m.blobId), { mode: 0o600 });
        await utimes(tmp, m.internalDate, m.internalDate);
        await rename(tmp, path);
        p.added++;
        onProgress(p);
      }
    if (keywords.length !== before || (keywords.length && !existsSync(keywordsFile)))
      await writeFile(keywordsFile, keywords.map((k, i) => `${i} ${k}\n`).join(''), { mode: 0o600 });
  }
  return p;
}

/** Whether PATH is an mbox file (else a Maildir directory); an error message when it is neither. */
export async function kindOf(path: string): Promise<'maildir' | 'mbox'> {
  const st = await stat(path);
  if (st.isDirectory()) return 'maildir';
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(5);
    await fh.read(head, 0, 5, 0);
    if (head.toString('latin1') === 'From ') return 'mbox';
  } finally {
    await fh.close();
  }
  throw new Error(`${path} is neither a Maildir directory nor an mbox file (which starts with "From ")`);
}

/** Where `mailwerk import USER imap://HOST` reads from. */
export interface ImapSource {
  host: string;
  port: number;
  /** TLS from the start (imaps://, 993); else STARTTLS, required unless `plain`. */
  secure: boolean;
  plain: boolean;
  user: string;
  password: string;
  /** Accept a certificate that does not verify (a self-signed server being left). */
  insecure: boolean;
}

const SPECIAL = new Set(['\\Sent', '\\Drafts', '\\Junk', '\\Trash', '\\Archive']);

/** The identity of a message that needs no download to compare: Message-ID, size, date to the second. */
const identity = (messageId: string | null | undefined, size: number, date: Date) =>
  messageId ? `${messageId}\0${size}\0${Math.floor(date.getTime() / 1000)}` : null;

/**
 * Copies every folder of an IMAP account into a user's mailboxes (RFC 3501 FETCH with imapflow): names
 * mapped (the remote delimiter to ours, special-use folders onto ours), each message byte for byte with
 * its flags, keywords and INTERNALDATE. Idempotent and resumable: each message is appended with a
 * delivery key made of the server, user, folder, UIDVALIDITY and UID, and a message already here (same
 * Message-ID, size and date) is not downloaded again. `dryRun` counts what would be copied.
 */
export async function importImap(
  store: MailStore,
  accountId: string,
  src: ImapSource,
  onProgress: OnProgress,
  options: { into?: string | undefined; dryRun?: boolean; maxSize?: number } = {},
): Promise<Progress & { folders: Array<{ remote: string; local: string; toCopy: number }> }> {
  const client = await imapClient(
    {
      host: src.host,
      port: src.port,
      tls: src.secure ? 'tls' : src.plain ? 'none' : 'starttls',
      insecure: src.insecure,
      user: src.user,
    },
    src.password,
  );
  const p: Progress & { folders: Array<{ remote: string; local: string; toCopy: number }> } = {
    folder: '',
    messages: 0,
    bytes: 0,
    added: 0,
    skipped: 0,
    failed: 0,
    folders: [],
  };
  await client.connect();
  try {
    const ours = await store.listMailboxes(accountId);
    for (const remote of await client.list()) {
      if (remote.flags.has('\\Noselect') || remote.flags.has('\\NonExistent')) continue;
      const special = remote.specialUse && SPECIAL.has(remote.specialUse) ? remote.specialUse : null;
      const mapped =
        remote.path.toUpperCase() === 'INBOX'
          ? 'INBOX'
          : ((special && ours.find((m) => m.specialUse === special)?.name) ??
            (remote.delimiter ? remote.path.split(remote.delimiter).join('/') : remote.path));
      const name = options.into ? (mapped === 'INBOX' ? options.into : `${options.into}/${mapped}`) : mapped;
      p.folder = name;
      const lock = await client.getMailboxLock(remote.path, { readOnly: true });
      try {
        const box = client.mailbox;
        const uidValidity = box ? String(box.uidValidity) : '0';
        const here = options.dryRun
          ? await store.getMailbox(accountId, name)
          : await mailboxFor(store, accountId, name);
        const known = new Set<string>();
        if (here)
          for (const m of await store.listMessages(here.id)) {
            const id = identity(m.structure.root.envelope?.messageId, m.size, m.internalDate);
            if (id) known.add(id);
          }
        // Metadata first: what is here already is neither downloaded nor counted as new.
        const todo: Array<{ uid: number; flags: string[]; date: Date; size: number }> = [];
        const inFolder = { messages: 0, bytes: 0, totalMessages: 0, totalBytes: 0 };
        if (box && box.exists > 0)
          for await (const m of client.fetch('1:*', {
            uid: true,
            flags: true,
            internalDate: true,
            size: true,
            envelope: true,
          })) {
            const date =
              m.internalDate instanceof Date ? m.internalDate : new Date(m.internalDate ?? Date.now());
            const size = m.size ?? 0;
            const id = identity(m.envelope?.messageId, size, date);
            inFolder.totalMessages++;
            inFolder.totalBytes += size;
            if (id && known.has(id)) {
              p.messages++;
              p.skipped++;
              p.bytes += size;
              inFolder.messages++;
              inFolder.bytes += size;
              continue;
            }
            todo.push({
              uid: m.uid,
              flags: [...(m.flags ?? [])].filter((f) => f !== '\\Recent'),
              date,
              size,
            });
          }
        p.folders.push({ remote: remote.path, local: name, toCopy: todo.length });
        p.inFolder = inFolder;
        if (options.dryRun || !here) {
          p.messages += todo.length;
          p.bytes += todo.reduce((n, t) => n + t.size, 0);
          inFolder.messages = inFolder.totalMessages;
          inFolder.bytes = inFolder.totalBytes;
          onProgress(p);
          continue;
        }
        // The folder begins: what it holds, and how much of it is here already.
        onProgress(p);
        const byUid = new Map(todo.map((t) => [t.uid, t]));
        // In batches: one FETCH of bodies for up to 200 messages, each appended as it arrives.
        for (let i = 0; i < todo.length; i += 200) {
          const uids = todo.slice(i, i + 200).map((t) => t.uid);
          for await (const m of client.fetch(uids.join(','), { uid: true, source: true }, { uid: true })) {
            const meta = byUid.get(m.uid);
            if (!meta || !m.source) continue;
            p.messages++;
            p.bytes += m.source.length;
            inFolder.messages++;
            inFolder.bytes += meta.size;
            if (options.maxSize && m.source.length > options.maxSize) {
              p.failed++;
              onProgress(p);
              continue;
            }
            const key = `import:imap:${src.host}:${src.user}:${remote.path}:${uidValidity}:${m.uid}`;
            if (await add(store, here, m.source, meta.flags, meta.date, key)) p.added++;
            else p.skipped++;
            onProgress(p);
          }
        }
      } finally {
        lock.release();
      }
    }
  } finally {
    await client.logout().catch(() => client.close());
  }
  delete p.inFolder;
  return p;
}
