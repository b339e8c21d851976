// The shared-store deployment cannot run here (no Docker engine, no MongoDB): this reads
// docker-compose.yml, the Dockerfile and the systemd unit and checks the properties a deployment that
// comes up needs, each of which was missing once. What it cannot check is said in the files themselves.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';

const ROOT = join(import.meta.dirname, '..', '..', '..');
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');

interface Service {
  image?: string;
  build?: unknown;
  command?: string[];
  restart?: string;
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  profiles?: string[];
}

describe('the shared-store deployment (docker-compose.yml)', () => {
  const compose = parse(read('docker-compose.yml'), { merge: true }) as {
    services: Record<string, Service>;
    volumes: Record<string, unknown>;
  };
  const { services } = compose;
  const mailwerk = ['mta', 'mda', 'access'] as const;

  it('runs each service from the one image, restarted when it ends, after its dependencies are healthy', () => {
    for (const name of mailwerk) {
      const s = services[name]!;
      assert.deepEqual(s.command, ['start', '--service', name]);
      assert.equal(s.restart, 'unless-stopped', name);
      assert.equal(
        s.depends_on?.mongo?.condition,
        'service_healthy',
        `${name} waits for MongoDB's replica set`,
      );
      assert.equal(s.depends_on?.redis?.condition, 'service_healthy', name);
    }
    assert.equal(
      services.mta!.depends_on?.mda?.condition,
      'service_healthy',
      'the MTA waits for the MDA it delivers to',
    );
    for (const dep of ['mongo', 'redis', 'rspamd'])
      assert.equal(services[dep]!.restart, 'unless-stopped', dep);
  });

  it("initiates MongoDB's replica set with its member named by the service name, and is healthy only once it has a primary", () => {
    const test = services.mongo!.healthcheck!.test.join(' ');
    assert.match(test, /rs\.initiate\(\{ _id: 'rs0', members: \[\{ _id: 0, host: 'mongo:27017' \}\] \}\)/);
    // Fails (quit(1)) until the set has a primary, including right after initiating it.
    assert.match(test, /myState !== 1\) quit\(1\)/);
    assert.match(test, /rs\.initiate\([^;]*\); quit\(1\)/);
    assert.deepEqual(services.mongo!.command, ['--replSet', 'rs0', '--bind_ip_all']);
    assert.match(
      services.mta!.environment!.MAILWERK_STORE__MONGODB_URL!,
      /^mongodb:\/\/mongo:27017\/\w+\?replicaSet=rs0$/,
    );
  });

  it('keeps configuration and data in volumes, names the host, and maps every client port', () => {
    for (const name of mailwerk) {
      const s = services[name]!;
      assert.ok(s.volumes?.includes('config:/etc/mailwerk'), name);
      assert.ok(s.volumes?.includes('data:/var/lib/mailwerk'), name);
      assert.match(
        s.environment!.MAILWERK_HOSTNAME!,
        /^\$\{MAILWERK_HOSTNAME:\?/,
        `${name}: the host name is required`,
      );
      assert.equal(s.environment!.MAILWERK_DATA_DIR, '/var/lib/mailwerk');
      assert.ok(s.healthcheck === undefined, `${name} uses the image's HEALTHCHECK`);
      assert.match(s.environment!.MAILWERK_HEALTHCHECK!, /^127\.0\.0\.1:\d+$/, name);
    }
    for (const v of ['config', 'data', 'mongo', 'redis']) assert.ok(v in compose.volumes, v);
    // Each published port reaches the port the service listens on inside (set in its environment).
    const env = services.mta!.environment!;
    const inside: Record<string, string | undefined> = {
      '25': env.MAILWERK_MTA__SMTP_PORT,
      '587': env.MAILWERK_MTA__SUBMISSION_PORT,
      '465': env.MAILWERK_MTA__SUBMISSIONS_PORT,
      '143': env.MAILWERK_ACCESS__IMAP_PORT,
      '993': env.MAILWERK_ACCESS__IMAPS_PORT,
      '110': env.MAILWERK_ACCESS__POP3_PORT,
      '995': env.MAILWERK_ACCESS__POP3S_PORT,
      '80': env.MAILWERK_ACCESS__AUTOCONFIG_HTTP_PORT,
      '443': env.MAILWERK_ACCESS__AUTOCONFIG_HTTPS_PORT,
    };
    const published = [...services.mta!.ports!, ...services.access!.ports!];
    for (const [outside, port] of Object.entries(inside)) {
      assert.ok(port && Number(port) > 1024, `${outside} is served on an unprivileged port inside`);
      assert.ok(published.includes(`${outside}:${port}`), `${outside} is published`);
    }
    // The MTA delivers where the MDA listens, and both see the same address.
    assert.equal(services.mda!.environment!.MAILWERK_MDA__LMTP, 'mda:2424');
    assert.equal(services.mta!.environment!.MAILWERK_MDA__LMTP, 'mda:2424');
  });

  it('has a cli service for `docker compose run --rm cli …` that `up` does not start, and the README shows it', () => {
    assert.deepEqual(services.cli!.profiles, ['tools']);
    assert.match(read('README.md'), /docker compose run --rm cli user add /);
  });

  it('builds an image that runs as an unprivileged user, checks its health and leaves local state out', () => {
    const dockerfile = read('infra/docker/Dockerfile');
    assert.match(dockerfile, /^USER mailwerk$/m);
    assert.match(dockerfile, /^HEALTHCHECK .*\n?.*healthcheck\.mjs/m);
    const ignored = read('.dockerignore').split('\n');
    for (const p of ['node_modules', '.git', '.tools', '**/dist', 'data']) assert.ok(ignored.includes(p), p);
  });
});

describe('the single-host install (infra/systemd/mailwerk.service)', () => {
  it('runs as the unprivileged user with only the capability to bind the mail ports', () => {
    const unit = read('infra/systemd/mailwerk.service');
    assert.match(unit, /^User=mailwerk$/m);
    assert.match(unit, /^AmbientCapabilities=CAP_NET_BIND_SERVICE$/m);
    assert.match(unit, /^CapabilityBoundingSet=CAP_NET_BIND_SERVICE$/m);
    assert.match(unit, /^ExecStart=\/opt\/mailwerk\/bin\/mailwerk start$/m);
    // What needs root happens before, marked "+": the user and the data directory, the built JavaScript.
    assert.match(unit, /^ExecStartPre=\+\/opt\/mailwerk\/bin\/mailwerk init$/m);
    assert.match(unit, /^ExecStartPre=\+\/opt\/mailwerk\/bin\/mailwerk build$/m);
  });
});
