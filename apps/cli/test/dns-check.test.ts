// `mailwerk dns check` against a DNS server of the test's own on loopback (UDP, dns-packet for the wire
// format): what is published as `mailwerk dns` prints it is ok, the rest is reported missing or different.
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { type Answer, decode, encode, type Question } from 'dns-packet';
import { initialised, type Sandbox } from './helpers.ts';

interface Zone {
  [nameAndType: string]: Answer[];
}

/** A DNS server answering from `zone` ("name TYPE" → answers); anything else NXDOMAIN. */
async function dnsServer(zone: Zone) {
  const socket = createSocket('udp4');
  socket.on('message', (msg, rinfo) => {
    const query = decode(msg);
    const q = query.questions?.[0] as Question | undefined;
    const answers = q ? (zone[`${q.name.toLowerCase()} ${q.type}`] ?? []) : [];
    const known = q && Object.keys(zone).some((k) => k.startsWith(`${q.name.toLowerCase()} `));
    const reply = encode({
      id: query.id,
      type: 'response',
      flags: (known ? 0 : 3) | 0x0100 | 0x0080, // RCODE (NXDOMAIN when the name is unknown), RD, RA
      questions: query.questions,
      answers,
    });
    socket.send(reply, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return { address: `127.0.0.1:${(socket.address() as AddressInfo).port}`, close: () => socket.close() };
}

describe('mailwerk dns check', () => {
  let sb: Sandbox;
  before(async () => {
    sb = await initialised();
    await sb.run(['domain', 'add', 'example.org']);
  });
  after(() => sb.cleanup());

  it('says ok for what is published as printed, and names what is missing or different', async () => {
    // What `mailwerk dns` asks for, published, then two mistakes: an old SPF and no DMARC.
    const records = JSON.parse((await sb.run(['--json', 'dns', 'example.org'])).stdout) as Array<{
      name: string;
      type: 'MX' | 'TXT' | 'SRV' | 'CNAME';
      value: string;
    }>;
    const zone: Zone = {};
    for (const r of records) {
      const name = r.name.replace(/\.$/, '');
      const key = `${name} ${r.type}`;
      const parts = r.value.split(' ');
      let answer: Answer;
      if (r.type === 'MX')
        answer = {
          type: 'MX',
          name,
          data: { preference: Number(parts[0]), exchange: parts[1]!.replace(/\.$/, '') },
        };
      else if (r.type === 'SRV')
        answer = {
          type: 'SRV',
          name,
          data: {
            priority: Number(parts[0]),
            weight: Number(parts[1]),
            port: Number(parts[2]),
            target: parts[3]!.replace(/\.$/, ''),
          },
        };
      else if (r.type === 'CNAME') answer = { type: 'CNAME', name, data: r.value.replace(/\.$/, '') };
      else answer = { type: 'TXT', name, data: [r.value] };
      zone[key] = [...(zone[key] ?? []), answer];
    }
    zone['example.org TXT'] = [
      { type: 'TXT', name: 'example.org', data: ['v=spf1 a -all'] },
      { type: 'TXT', name: 'example.org', data: ['google-site-verification=abc'] },
    ];
    delete zone['_dmarc.example.org TXT'];
    const dns = await dnsServer(zone);
    try {
      const r = await sb.run(['dns', 'check', 'example.org', '--resolver', dns.address]);
      assert.equal(r.code, 1, r.stderr);
      const row = (name: string, type: string) =>
        r.stdout.split('\n').find((l) => l.startsWith(`${name} `) && l.split(/\s+/)[1] === type) ?? '';
      assert.match(row('example.org.', 'MX'), /\sok\s+10 mail\.example\.org\.$/);
      assert.match(row('example.org.', 'TXT'), /\sdifferent\s+v=spf1 a -all$/);
      assert.match(row('_dmarc.example.org.', 'TXT'), /\smissing\s+-$/);
      assert.match(row('_imaps._tcp.example.org.', 'SRV'), /\sok\s+0 1 2993 mail\.example\.org\.$/);
      assert.match(row('autodiscover.example.org.', 'CNAME'), /\sok\s/);
      assert.match(
        r.stdout,
        /^2 of \d+ records missing or different; "mailwerk dns example\.org" prints what to publish$/m,
      );
      // Published as printed: nothing to say, exit 0.
      zone['example.org TXT'] = [{ type: 'TXT', name: 'example.org', data: ['v=spf1 mx ~all'] }];
      zone['_dmarc.example.org TXT'] = [
        {
          type: 'TXT',
          name: '_dmarc.example.org',
          data: [records.find((x) => x.name === '_dmarc.example.org.')!.value],
        },
      ];
      const good = await sb.run(['dns', 'check', 'example.org', '--resolver', dns.address]);
      assert.equal(good.code, 0, good.stdout);
      assert.match(good.stdout, /^all \d+ records published as they should be$/m);
    } finally {
      dns.close();
    }
  });
});
