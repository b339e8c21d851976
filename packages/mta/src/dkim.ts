/**
 * DKIM for mail our users send (RFC 6376; Ed25519 per RFC 8463): key
 * generation, the DNS record of a key, and the signer submission uses, with
 * mailauth doing the canonicalization and signing.
 */
import { generateKeyPairSync } from 'node:crypto';
import type { DkimAlgorithm, DkimKey, MailStore } from '@mailwerk/store';
import { sealMessage } from 'mailauth';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import { ourAuthenticationResults } from './trust.ts';

export interface GeneratedKey {
  algorithm: DkimAlgorithm;
  privateKey: string;
  /** The p= value for DNS. */
  publicKey: string;
}

export function generateDkimKey(kind: 'rsa' | 'ed25519'): GeneratedKey {
  if (kind === 'rsa') {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    return {
      algorithm: 'rsa-sha256',
      privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      // RFC 6376 §3.6.1: p= is the DER SubjectPublicKeyInfo, base64.
      publicKey: publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
    };
  }
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  return {
    algorithm: 'ed25519-sha256',
    privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    // RFC 8463 §4.2: p= is the raw 32-byte key (the tail of the SPKI), base64.
    publicKey: spki.subarray(spki.length - 32).toString('base64'),
  };
}

/** A selector named by the date, as `mailwerk dkim generate` chooses it: 20261123 (RSA), 20261123e (Ed25519). */
export function selectorFor(date: Date, algorithm: DkimAlgorithm, taken: readonly string[] = []): string {
  const base = `${date.toISOString().slice(0, 10).replace(/-/g, '')}${algorithm === 'ed25519-sha256' ? 'e' : ''}`;
  let s = base;
  for (let n = 2; taken.includes(s); n++) s = `${base}-${n}`;
  return s;
}

/** The TXT record value for a key: `v=DKIM1; k=rsa; p=…`. */
export const dkimRecordValue = (key: Pick<DkimKey, 'algorithm' | 'publicKey'>): string =>
  `v=DKIM1; k=${key.algorithm === 'ed25519-sha256' ? 'ed25519' : 'rsa'}; p=${key.publicKey}`;

/** Signs with every active key of the domain; '' when the domain has none. */
export function createDkimSigner(store: MailStore): (message: Buffer, domain: string) => Promise<string> {
  return async (message, domain) => {
    const keys = (await store.listDkimKeys(domain)).filter((k) => k.state === 'active');
    if (keys.length === 0) return '';
    const result = await dkimSign(message, {
      signingDomain: keys[0]!.domain,
      selector: keys[0]!.selector,
      privateKey: keys[0]!.privateKey,
      signatureData: keys.map((k) => ({
        signingDomain: k.domain,
        selector: k.selector,
        privateKey: k.privateKey,
        algorithm: k.algorithm,
        canonicalization: 'relaxed/relaxed',
      })),
    });
    if (result.errors?.length) throw new Error(`DKIM signing failed: ${JSON.stringify(result.errors)}`);
    return result.signatures;
  };
}

/**
 * ARC sealer (RFC 8617) for mail we forward: one ARC set made with the active key of the forwarding
 * domain, carrying this host's own Authentication-Results (the MX removed any other claiming its name)
 * as the ARC-Authentication-Results, and the chain's state from its arc= result as cv. '' when the domain
 * has no key or the message has no results of ours (nothing to vouch for), or mailauth declines to seal.
 */
export function createArcSealer(
  store: MailStore,
  hostname: string,
): (message: Buffer, domain: string) => Promise<string> {
  return async (message, domain) => {
    const key = (await store.listDkimKeys(domain)).find((k) => k.state === 'active');
    if (!key) return '';
    const authResults = ourAuthenticationResults(message, hostname);
    if (!authResults) return '';
    const cv = /\barc=(pass|fail)\b/i.exec(authResults)?.[1]?.toLowerCase() ?? 'none';
    const seal = await sealMessage(message, {
      signingDomain: key.domain,
      selector: key.selector,
      privateKey: key.privateKey,
      authResults,
      cv,
    } as Parameters<typeof sealMessage>[1]);
    return seal.toString('latin1');
  };
}
