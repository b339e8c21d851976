import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fromData } from '@mailwerk/config';
import { configChanges, withReloadable } from '../src/config-reload.ts';

describe('configuration reload', () => {
  const base = fromData({ hostname: 'mx.example.org', data_dir: '/var/lib/mailwerk' }, null);
  const next = fromData(
    {
      hostname: 'mx.example.org',
      data_dir: '/var/lib/mailwerk',
      log_level: 'debug',
      mta: { routes: { 'a.example': '127.0.0.1:2525' }, smtp_port: 2525 },
      limits: { max_connections: 77 },
    },
    null,
  );

  it('names the settings that changed, split into those a reload takes and those that wait for a start', () => {
    assert.deepEqual(configChanges(base, next), {
      applied: ['log_level', 'mta.routes.a.example'],
      atNextStart: ['limits.max_connections', 'mta.smtp_port'],
    });
    assert.deepEqual(configChanges(base, base), { applied: [], atNextStart: [] });
    // A route removed is a change too.
    assert.deepEqual(configChanges(next, withReloadable(next, base)).applied, [
      'log_level',
      'mta.routes.a.example',
    ]);
  });

  it('takes only the reloadable settings from the new file', () => {
    const merged = withReloadable(base, next);
    assert.equal(merged.log_level, 'debug');
    assert.deepEqual(merged.mta.routes, { 'a.example': '127.0.0.1:2525' });
    assert.equal(merged.mta.smtp_port, base.mta.smtp_port);
    assert.equal(merged.limits.max_connections, base.limits.max_connections);
    assert.equal(base.log_level, 'info', 'the configuration in use is not changed in place');
  });
});
