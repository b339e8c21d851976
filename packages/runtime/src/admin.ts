/**
 * The admin HTTP port of `mailwerk start` (admin.listen, admin.port; loopback
 * by default), served by the supervisor, which sees every service process:
 *
 * - `GET /healthz`: 200 while the supervisor answers (liveness);
 * - `GET /readyz`: 200 when every service process is running and listening,
 *   else 503; the body is the status below;
 * - `GET /status`: JSON: version, and per service its state, pid, restarts
 *   and addresses (what `mailwerk status` shows);
 * - `GET /metrics`: Prometheus text: every service process's metrics
 *   (metrics.ts, asked over IPC) added together, and the supervisor's own:
 *   which services are up and how often each was restarted.
 *
 * prom-client is loaded at the first scrape, so a supervisor nobody scrapes
 * does not pay for it.
 */
import { createServer, type Server } from 'node:http';
import type { Supervisor } from './supervisor.ts';

export interface AdminInfo {
  version: string;
  node: string;
}

type Prom = typeof import('prom-client');

export function adminServer(supervisor: Supervisor, info: AdminInfo): Server {
  let prom: Promise<{ lib: Prom; own: import('prom-client').Registry; sync(): void }> | null = null;
  const ownMetrics = () =>
    (prom ??= import('prom-client').then((lib) => {
      const own = new lib.Registry();
      const up = new lib.Gauge({
        name: 'mailwerk_service_up',
        help: 'Whether the service process is running and listening (1) or not (0).',
        labelNames: ['service'] as const,
        registers: [own],
      });
      const restarts = new lib.Counter({
        name: 'mailwerk_service_restarts_total',
        help: 'Times the supervisor started a service process again after it exited or stalled.',
        labelNames: ['service'] as const,
        registers: [own],
      });
      const counted = new Map<string, number>();
      const sync = () => {
        for (const s of supervisor.status()) {
          up.set({ service: s.service }, s.state === 'running' ? 1 : 0);
          const delta = s.restarts - (counted.get(s.service) ?? 0);
          restarts.inc({ service: s.service }, delta);
          counted.set(s.service, s.restarts);
        }
      };
      return { lib, own, sync };
    }));
  const status = () => ({ version: info.version, node: info.node, services: supervisor.status() });
  const json = (res: import('node:http').ServerResponse, code: number, body: unknown) => {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(`${JSON.stringify(body, null, 2)}\n`);
  };
  return createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    switch (path) {
      case '/healthz':
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
        return;
      case '/readyz': {
        const s = status();
        return json(res, s.services.every((x) => x.state === 'running') ? 200 : 503, s);
      }
      case '/status':
        return json(res, 200, status());
      case '/metrics':
        void (async () => {
          const { lib, own, sync } = await ownMetrics();
          sync();
          const all = [...(await supervisor.childMetrics()), await own.getMetricsAsJSON()];
          const registry = lib.AggregatorRegistry.aggregate(
            all as Parameters<typeof lib.AggregatorRegistry.aggregate>[0],
          );
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(await registry.metrics());
        })().catch((err: unknown) => {
          res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics: ${String(err)}\n`);
        });
        return;
      default:
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
}
