/**
 * Concurrent connections of one service, in all and per client address: the
 * same rule for the MX, submission, IMAP and POP3. A place is taken the
 * moment a connection is accepted (before any TLS handshake or lookup), so a
 * burst of simultaneous connections cannot slip past the count.
 */
export class ConnectionLimiter {
  private readonly perAddress = new Map<string, number>();
  private total = 0;
  private readonly max: number;
  private readonly maxPerAddress: number;

  constructor(max: number, maxPerAddress: number) {
    this.max = max;
    this.maxPerAddress = maxPerAddress;
  }

  /** Takes a place for a connection from `address`: null when admitted (release it once on close), else why not. */
  admit(address: string): 'total' | 'address' | null {
    const n = this.perAddress.get(address) ?? 0;
    if (this.total >= this.max) return 'total';
    if (n >= this.maxPerAddress) return 'address';
    this.perAddress.set(address, n + 1);
    this.total++;
    return null;
  }

  release(address: string): void {
    const n = this.perAddress.get(address);
    if (!n) return;
    if (n > 1) this.perAddress.set(address, n - 1);
    else this.perAddress.delete(address);
    this.total--;
  }
}
