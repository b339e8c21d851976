/**
 * The services never run as root. Started as root (ports 25, 143, 993 … need
 * it to be bound), a service process binds its ports and then drops to the
 * unprivileged user `run_as` for good, as Postfix's and Dovecot's processes
 * do; the supervisor, which only relays messages between its children and
 * starts them again, stays root to bind their ports again, as Postfix's
 * master and Dovecot's do.
 *
 * The data directory (the store, the certificate, the bodies, the LMTP
 * socket) belongs to that user: it is handed over before the services start,
 * so files that root created (`mailwerk init`, a CLI command run as root)
 * stay usable.
 */
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, lstatSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Config } from '@mailwerk/config';
import type { Listening } from './listen.ts';

export interface Identity {
  user: string;
  uid: number;
  gid: number;
}

export const isRoot = (): boolean => process.getuid?.() === 0;

/** A user from the system's user database (getent: files, LDAP, …); null when there is none. */
export function lookupUser(user: string): Identity | null {
  try {
    const fields = execFileSync('getent', ['passwd', user], { encoding: 'utf8' }).trim().split(':');
    return { user, uid: Number(fields[2]), gid: Number(fields[3]) };
  } catch {
    return null;
  }
}

/** The identity services drop to when started as root; throws with what to do when the user is missing. */
export function serviceIdentity(config: Config): Identity {
  const id = lookupUser(config.run_as);
  if (!id)
    throw Object.assign(
      new Error(
        `the user "${config.run_as}" the services run as does not exist: run "mailwerk init" as root to create it, or set run_as`,
      ),
      { code: 'ENOUSER' },
    );
  if (id.uid === 0) throw new Error(`run_as = "${config.run_as}" is root; name an unprivileged user`);
  return id;
}

/** Gives `path` and everything under it to `id` (only what another user owns; symbolic links are not followed). */
function handOverTree(path: string, id: Identity): void {
  if (!existsSync(path)) return;
  const walk = (p: string) => {
    const st = lstatSync(p);
    if (st.isSymbolicLink()) return;
    if (st.uid !== id.uid || st.gid !== id.gid) chownSync(p, id.uid, id.gid);
    if (st.isDirectory()) for (const e of readdirSync(p)) walk(join(p, e));
  };
  walk(path);
}

/** Throws unless `id` may pass through every directory above `path` (a 0700 parent stops it at the door). */
function checkReachable(path: string, id: Identity): void {
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    const st = lstatSync(dir);
    const ok = st.uid === id.uid ? st.mode & 0o100 : st.gid === id.gid ? st.mode & 0o010 : st.mode & 0o001;
    if (!ok)
      throw new Error(
        `the user "${id.user}" cannot reach ${path}: ${dir} is not searchable by it (chmod o+x ${dir}, or move the data directory)`,
      );
    if (dir === dirname(dir)) return;
  }
}

/** What the services write, handed over to `id` before they start (as root). */
export function handOverData(config: Config, id: Identity): void {
  checkReachable(config.data_dir, id);
  handOverTree(config.data_dir, id);
  // A store or a certificate configured outside the data directory: the files and their directory.
  const paths = [config.tls.cert, config.tls.key];
  if (config.store.backend === 'sqlite') {
    const db = config.store.sqlite_path;
    paths.push(db, `${db}-wal`, `${db}-shm`, dirname(db));
  }
  for (const p of paths)
    if (existsSync(p) && !p.startsWith(`${config.data_dir}/`)) chownSync(p, id.uid, id.gid);
}

/**
 * Drops this process to `id` for good, after its ports are bound: the unix
 * sockets it listens on are given to the user first (the MTA, running as the
 * user too, must be able to connect to the MDA's), then the groups (only its own), the group
 * and last the user (after setuid nothing can be changed back).
 */
export function dropPrivileges(id: Identity, listening: Listening[]): void {
  for (const l of listening) if (l.address.startsWith('unix:')) chownSync(l.address.slice(5), id.uid, id.gid);
  process.setgroups?.([id.gid]);
  process.setgid?.(id.gid);
  process.setuid?.(id.uid);
  if (process.getuid?.() !== id.uid) throw new Error(`could not drop to the user ${id.user}`);
}
