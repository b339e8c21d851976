/**
 * Delivery status notifications (RFC 3464): a multipart/report with a
 * human-readable part, the machine-readable message/delivery-status part,
 * and the original message's header (or all of it with RET=FULL).
 */
import { randomBytes } from 'node:crypto';
import { headerBlock, rfc5322Date } from '@mailwerk/smtp';

export interface DsnRecipient {
  address: string;
  orcpt?: string | undefined;
  /** RFC 3464 §2.3.3: `failed` (a bounce), `delayed` (a warning), or for NOTIFY=SUCCESS what became of it. */
  action: 'failed' | 'delayed' | 'delivered' | 'relayed' | 'expanded';
  /** Enhanced status code, e.g. 5.1.1. */
  status: string;
  /** The remote reply that decided it, e.g. `550 5.1.1 no such user`. */
  diagnostic: string;
  /** Who gave that reply (the MDA, a remote MX). */
  remoteMta?: string;
}

export interface DsnInput {
  reportingMta: string;
  /** Where the DSN goes: the original envelope sender. */
  to: string;
  originalMessage: Buffer;
  arrivalDate: Date;
  envid?: string | undefined;
  /** RET=FULL returns the whole message; otherwise only its header. */
  returnFull?: boolean;
  recipients: DsnRecipient[];
  date?: Date;
}

const oneLine = (s: string) => s.replace(/[\r\n]+/g, ' ').slice(0, 900);

export function buildDsn(d: DsnInput): Buffer {
  const boundary = `mw-${randomBytes(12).toString('hex')}`;
  const failed = d.recipients.filter((r) => r.action === 'failed');
  const delayed = d.recipients.filter((r) => r.action === 'delayed');
  const success = failed.length === 0 && delayed.length === 0;
  const subject =
    failed.length > 0
      ? 'Undelivered Mail Returned to Sender'
      : delayed.length > 0
        ? 'Delayed Mail (still being retried)'
        : 'Successful Mail Delivery Report';
  const human = [
    `This is the mail system at host ${d.reportingMta}.`,
    '',
    failed.length > 0
      ? 'I am sorry to inform you that your message could not be delivered to one or more recipients. It is attached below.'
      : delayed.length > 0
        ? 'Your message could not be delivered yet. The mail system will keep trying; you do not need to send it again.'
        : 'Your message was successfully delivered to the destinations listed below, as you asked (NOTIFY=SUCCESS).',
    '',
    ...d.recipients.map((r) => `<${r.address}>: ${oneLine(r.diagnostic)}`),
    '',
  ].join('\r\n');
  const perMessage = [
    `Reporting-MTA: dns; ${d.reportingMta}`,
    ...(d.envid ? [`Original-Envelope-Id: ${oneLine(d.envid)}`] : []),
    `Arrival-Date: ${rfc5322Date(d.arrivalDate)}`,
  ];
  const perRecipient = d.recipients.map((r) =>
    [
      ...(r.orcpt ? [`Original-Recipient: ${oneLine(r.orcpt)}`] : []),
      `Final-Recipient: rfc822; ${r.address}`,
      `Action: ${r.action}`,
      `Status: ${r.status}`,
      ...(r.remoteMta ? [`Remote-MTA: dns; ${r.remoteMta}`] : []),
      `Diagnostic-Code: smtp; ${oneLine(r.diagnostic)}`,
    ].join('\r\n'),
  );
  const original = d.returnFull
    ? d.originalMessage.toString('latin1')
    : `${headerBlock(d.originalMessage)}\r\n`;
  const date = d.date ?? new Date();
  const head = [
    `From: Mail Delivery System <MAILER-DAEMON@${d.reportingMta}>`,
    `To: <${d.to}>`,
    `Subject: ${subject}`,
    `Date: ${rfc5322Date(date)}`,
    `Message-ID: <${randomBytes(10).toString('hex')}.dsn@${d.reportingMta}>`,
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
  ].join('\r\n');
  const body = [
    `--${boundary}`,
    'Content-Type: text/plain; charset=utf-8',
    'Content-Description: Notification',
    '',
    human,
    `--${boundary}`,
    'Content-Type: message/delivery-status',
    'Content-Description: Delivery report',
    '',
    `${perMessage.join('\r\n')}\r\n\r\n${perRecipient.join('\r\n\r\n')}\r\n`,
    `--${boundary}`,
    `Content-Type: ${d.returnFull ? 'message/rfc822' : 'text/rfc822-headers'}`,
    `Content-Description: ${success ? 'Message' : 'Undelivered Message'}${d.returnFull ? '' : ' Headers'}`,
    '',
    original,
    `--${boundary}--`,
    '',
  ].join('\r\n');
  return Buffer.from(`${head}\r\n\r\n${body}`, 'latin1');
}
