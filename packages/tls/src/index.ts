/**
 * TLS material for every listener. When the admin configures no certificate,
 * one is generated on first start and self-signed for the host name, so TLS
 * is available from the first minute (clients will ask the user to accept it
 * until a real certificate is configured).
 */
import { X509Certificate } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

export interface TlsFiles {
  cert: string;
  key: string;
}

export interface CertificateInfo {
  subject: string;
  altNames: string;
  validFrom: Date;
  validTo: Date;
  fingerprint256: string;
  selfSigned: boolean;
}

export function describeCertificate(pem: string): CertificateInfo {
  const x = new X509Certificate(pem);
  return {
    subject: x.subject,
    altNames: x.subjectAltName ?? '',
    validFrom: new Date(x.validFrom),
    validTo: new Date(x.validTo),
    fingerprint256: x.fingerprint256,
    // checkIssued() would demand keyCertSign; a leaf certificate signed by its own key is what we mean.
    selfSigned: x.issuer === x.subject && x.verify(x.publicKey),
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await readFile(path);
    return true;
  } catch {
    return false;
  }
}

/** Writes via a temporary file and rename, so a crash never leaves half a key. */
async function writeAtomic(path: string, data: string, mode: number): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o750 });
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, data, { mode });
  await rename(tmp, path);
}

export async function generateSelfSigned(hostname: string, days = 825): Promise<TlsFiles> {
  const notBeforeDate = new Date(Date.now() - 60_000);
  const notAfterDate = new Date(notBeforeDate.getTime() + days * 86_400_000);
  // Loaded only to generate one (a process that reads an existing certificate does not pay for node-forge).
  const { generate } = await import('selfsigned');
  const pems = await generate([{ name: 'commonName', value: hostname }], {
    keyType: 'rsa',
    keySize: 2048,
    algorithm: 'sha256',
    notBeforeDate,
    notAfterDate,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: hostname },
          ...(hostname === 'localhost' ? [] : [{ type: 2 as const, value: 'localhost' }]),
          { type: 7, ip: '127.0.0.1' },
          { type: 7, ip: '::1' },
        ],
      },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}

/**
 * Loads the certificate and key at the given paths; when neither exists,
 * generates a self-signed pair there first. One present without the other is
 * an error, not something to paper over.
 */
export async function ensureCertificate(options: {
  certPath: string;
  keyPath: string;
  hostname: string;
}): Promise<TlsFiles & { generated: boolean }> {
  const [hasCert, hasKey] = await Promise.all([exists(options.certPath), exists(options.keyPath)]);
  if (hasCert !== hasKey) {
    throw new Error(
      `TLS: ${hasCert ? options.certPath : options.keyPath} exists but ${hasCert ? options.keyPath : options.certPath} does not`,
    );
  }
  if (hasCert) {
    const [cert, key] = await Promise.all([
      readFile(options.certPath, 'utf8'),
      readFile(options.keyPath, 'utf8'),
    ]);
    describeCertificate(cert); // Fails early on a file that is not a certificate.
    return { cert, key, generated: false };
  }
  const pair = await generateSelfSigned(options.hostname);
  await writeAtomic(options.keyPath, pair.key, 0o600);
  await writeAtomic(options.certPath, pair.cert, 0o644);
  return { ...pair, generated: true };
}

export { type ClientHelloInfo, MAX_CLIENT_HELLO, readClientHello } from './client-hello.ts';
export { PacedWriter, SLICE } from './paced.ts';
