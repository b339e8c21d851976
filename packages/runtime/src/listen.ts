/** Listening on "unix:/path", "host:port" or a port, for every kind of server the services run. */
import { existsSync, unlinkSync } from 'node:fs';
import { connect, type Server as NetServer } from 'node:net';

export interface Listening {
  service: string;
  address: string;
}

/** A socket file left by a process that died is in the way; one that still answers belongs to a running MDA. */
function removeStaleSocket(path: string): Promise<void> {
  if (!existsSync(path)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      // Reported like a taken port: the admin sees "cannot listen on unix:…: in use by another program".
      reject(
        Object.assign(new Error(`${path} is in use by a running process`), {
          code: 'EADDRINUSE',
          address: `unix:${path}`,
        }),
      );
    });
    probe.once('error', () => {
      unlinkSync(path);
      resolve();
    });
  });
}

/** What can listen: our SMTP engine (SmtpServer) and a plain net/http server both have this shape. */
export interface Listenable {
  listen(...args: unknown[]): unknown;
  once(event: 'error', listener: (err: Error) => void): unknown;
  removeListener(event: 'error', listener: (err: Error) => void): unknown;
  address?(): ReturnType<NetServer['address']>;
  on?(event: 'connection', listener: () => void): unknown;
  server?: {
    address(): ReturnType<NetServer['address']>;
    on(event: 'connection', listener: () => void): unknown;
  };
}

/**
 * Listens on "unix:/path", "host:port" or a port (on `host`); resolves with the address taken.
 * `onConnection` is told of every connection accepted (for the metrics).
 */
export async function listen(
  server: Listenable,
  where: string | number,
  host: string,
  onConnection?: () => void,
  /** Several processes listen on this port (SO_REUSEPORT: the kernel spreads connections among them). */
  reusePort = false,
): Promise<string> {
  const spec = String(where);
  if (onConnection) {
    if (server.server) server.server.on('connection', onConnection);
    else server.on?.('connection', onConnection);
  }
  if (spec.startsWith('unix:')) await removeStaleSocket(spec.slice(5));
  return new Promise((resolve, reject) => {
    // The servers re-emit their socket's errors; unhandled, an 'error' event ends the process.
    server.once('error', reject);
    const done = (address: string) => {
      server.removeListener('error', reject);
      resolve(address);
    };
    if (spec.startsWith('unix:')) {
      const path = spec.slice(5);
      server.listen(path, () => done(`unix:${path}`));
      return;
    }
    const m = /^(?:\[?([^\]]*)\]?:)?(\d+)$/.exec(spec);
    if (!m) return reject(new Error(`cannot listen on "${spec}"`));
    server.listen(
      { port: Number(m[2]), host: m[1] || host, ...(reusePort ? { reusePort: true } : {}) },
      () => {
        const a = server.server ? server.server.address() : server.address?.();
        done(typeof a === 'object' && a ? `${a.address}:${a.port}` : String(a));
      },
    );
  });
}

/** Closes a server, resolving when it has (a server that never listened is closed already). */
export const closeServer = (s: { close(cb: () => void): unknown }): Promise<void> =>
  new Promise<void>((resolve) => {
    s.close(() => resolve());
  });
