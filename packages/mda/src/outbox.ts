/**
 * The outbox that puts generated mail (deliver.ts: Sieve redirects and vacation replies) into the
 * MTA's queue in the store, where the queue runner picks it up within its poll interval: the MDA and
 * the MTA share the store in every Mailwerk set-up. A reply we write is DKIM-signed here, before it
 * is queued, as submission signs a user's mail; a redirect goes as it came (ARC-sealed where configured).
 */
import { contentId, isStoreError, type MailStore, type QueueEntry } from '@mailwerk/store';
import type { Outbox } from './deliver.ts';

export interface QueueOutboxOptions {
  /** DKIM signer (the MTA's createDkimSigner): header fields to put in front, '' when the domain has no key. */
  sign?: (message: Buffer, domain: string) => Promise<string>;
  /** ARC sealer (the MTA's createArcSealer) for redirects to other domains, where sealing is configured. */
  seal?: (message: Buffer, domain: string) => Promise<string>;
  onQueued?: (entry: QueueEntry) => void;
}

export function queueOutbox(store: MailStore, options: QueueOutboxOptions = {}): Outbox {
  return {
    async send(mail) {
      const signature =
        (mail.signFor && options.sign ? await options.sign(mail.data, mail.signFor) : '') +
        (mail.sealFor && options.seal ? await options.seal(mail.data, mail.sealFor) : '');
      const data = signature ? Buffer.concat([Buffer.from(signature, 'latin1'), mail.data]) : mail.data;
      try {
        const entry = await store.enqueue({
          sender: mail.sender,
          recipients: [{ address: mail.recipient }],
          blobId: contentId(data),
          data,
          size: data.length,
          meta: { origin: `sieve ${mail.kind}`, user: mail.user },
          ...(mail.once ? { once: mail.once } : {}),
        });
        options.onQueued?.(entry);
        return true;
      } catch (err) {
        if (isStoreError(err, 'exists')) return false;
        throw err;
      }
    },
  };
}
