import { PASSWORD, RawImap, rig, storeMessage } from './harness.ts';

const r = await rig();
const subjects = [
  'a',
  'C',
  'b',
  '_',
  '[foo] Fwd: [bar] Re: fw: b (fWd)  (fwd)',
  'b (a)',
  'Re: [FWD: c]',
  '[xyz]',
  null,
];
const bodies = ['1', '2', '3', '4', '55', '66', '77', '88', '9'];
for (const [i, subj] of subjects.entries())
  await storeMessage(
    r,
    'bob',
    'INBOX',
    Buffer.from(`${subj === null ? '' : `Subject: ${subj}\r\n`}\r\n${bodies[i]}\r\n`),
    { internalDate: new Date('2008-02-22T21:00:00Z') },
  );
const c = await RawImap.connect(r.tlsPort, true);
await c.cmd(`LOGIN bob@example.org "${PASSWORD}"`);
for (const cmd of process.argv.slice(2)) {
  const out = await c.cmd(cmd);
  console.log('>', cmd);
  process.stdout.write(out);
}
c.close();
await r.close();
