/**
 * Recipient resolution over the MailStore primitives, the same for every
 * adapter. Order, as Postfix's virtual(5) lookups behave: the exact address
 * (account, then alias), then the address without its `+tag`, then the
 * domain's catch-all `@domain`.
 */
import { normalizeAddress, normalizeAliasSource, splitPlus } from './address.ts';
import { isStoreError, StoreError } from './errors.ts';
import { makeReply } from './reply.ts';
import type { Account, Alias, DeliveryReply, MailStore } from './types.ts';

export type Resolution =
  | {
      kind: 'account';
      account: Account /** the `+tag`, to file into a folder of that name */;
      tag: string | null;
    }
  | { kind: 'alias'; alias: Alias; tag: string | null };

export async function resolveRecipient(store: MailStore, address: string): Promise<Resolution | null> {
  const canonical = normalizeAddress(address);
  const exact = await lookup(store, canonical, null);
  if (exact) return exact;
  const plus = splitPlus(canonical);
  if (plus) {
    const base = await lookup(store, plus.base, plus.tag);
    if (base) return base;
  }
  const domain = canonical.slice(canonical.lastIndexOf('@'));
  const catchAll = await store.getAlias(domain);
  return catchAll ? { kind: 'alias', alias: catchAll, tag: null } : null;
}

async function lookup(store: MailStore, address: string, tag: string | null): Promise<Resolution | null> {
  const account = await store.getAccountByAddress(address);
  if (account) return { kind: 'account', account, tag };
  const alias = await store.getAlias(address);
  return alias ? { kind: 'alias', alias, tag } : null;
}

export interface Expansion {
  /** Each local account once, with the `+tag` it was reached with. */
  accounts: Array<{ account: Account; tag: string | null }>;
  /** External (non-local) addresses, each once. */
  external: string[];
}

/**
 * The expansion of an address that is an account's own (no `+tag`, no alias), or null when it is not
 * one. The domain is not looked up: an account's domain is always local (createAccount refuses an
 * unknown domain, removeDomain removes the domain's accounts or refuses). So the MX and the MDA ask this
 * first at RCPT, one read for the common recipient instead of the domain's and the account's, and go
 * the whole way (their domain check, then expandRecipient) for the others.
 */
export async function accountExpansion(store: MailStore, canonical: string): Promise<Expansion | null> {
  const account = await store.getAccountByAddress(canonical);
  return account ? { accounts: [{ account, tag: null }], external: [] } : null;
}

/** A chain of aliases longer than this is treated as a loop. */
export const MAX_ALIAS_DEPTH = 10;

/**
 * Expands a recipient through aliases to accounts and external addresses.
 * An alias loop (a → b → a) or a chain deeper than MAX_ALIAS_DEPTH is refused
 * with `conflict`, so one message cannot turn into a storm. A local address
 * that resolves to nothing is `not_found`.
 */
export async function expandRecipient(
  store: MailStore,
  address: string,
  isLocalDomain: (domain: string) => Promise<boolean>,
): Promise<Expansion> {
  const out: Expansion = { accounts: [], external: [] };
  const seenAccounts = new Set<string>();
  const seenExternal = new Set<string>();

  const visit = async (addr: string, path: string[]): Promise<void> => {
    const canonical = normalizeAddress(addr);
    if (path.includes(canonical)) {
      throw new StoreError('conflict', `alias loop: ${[...path, canonical].join(' -> ')}`);
    }
    if (path.length > MAX_ALIAS_DEPTH) {
      throw new StoreError('conflict', `alias chain deeper than ${MAX_ALIAS_DEPTH}: ${path.join(' -> ')}`);
    }
    const domain = canonical.slice(canonical.lastIndexOf('@') + 1);
    if (!(await isLocalDomain(domain))) {
      if (!seenExternal.has(canonical)) {
        seenExternal.add(canonical);
        out.external.push(canonical);
      }
      return;
    }
    const res = await resolveRecipient(store, canonical);
    if (!res) throw new StoreError('not_found', `no such recipient: ${canonical}`);
    if (res.kind === 'account') {
      if (!seenAccounts.has(res.account.id)) {
        seenAccounts.add(res.account.id);
        out.accounts.push({ account: res.account, tag: res.tag });
      }
      return;
    }
    for (const target of res.alias.targets) await visit(target, [...path, canonical]);
  };

  await visit(address, []);
  return out;
}

/**
 * What a failed expansion means for the recipient, the same at the MX's RCPT,
 * the MDA's RCPT and the queue runner's attempt (RFC 3463): no such address
 * (or alias target) 550 5.1.1, an alias loop 550 5.4.6. Null for any other
 * failure, which is not an answer about the address (a store that failed).
 */
export function expansionRefusal(err: unknown, address: string): DeliveryReply | null {
  if (isStoreError(err, 'not_found')) return makeReply(550, '5.1.1', `<${address}> no such user here`);
  if (isStoreError(err, 'conflict')) return makeReply(550, '5.4.6', `<${address}> alias loop`);
  return null;
}

/**
 * Whether an account may send as `address` (submission's sender check): its
 * own address, with or without a `+tag`, or an alias (not a catch-all) that
 * delivers to it.
 */
export async function ownsAddress(store: MailStore, account: Account, address: string): Promise<boolean> {
  let res: Resolution | null;
  try {
    res = await resolveRecipient(store, address);
  } catch {
    return false;
  }
  if (!res) return false;
  if (res.kind === 'account') return res.account.id === account.id;
  return !res.alias.address.startsWith('@') && res.alias.targets.includes(account.address);
}

/**
 * Checks an alias before it is added (`mailwerk alias add`): every local
 * target must resolve to something, and the alias must not reach itself.
 * Otherwise the MX would accept mail at RCPT that can only bounce later,
 * to a sender that may be forged (backscatter). Throws `not_found` for a
 * local target that does not exist and `conflict` for a loop; the store is
 * not touched. A catch-all is checked with an address it would catch.
 */
export async function checkAliasTargets(store: MailStore, address: string, targets: string[]): Promise<void> {
  const { address: source, domain, catchAll } = normalizeAliasSource(address);
  const planned: Alias = {
    address: source,
    domain,
    targets: targets.map(normalizeAddress),
    createdAt: new Date(),
  };
  // The store as it will be once the alias is in.
  const overlay = new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'getAlias')
        return async (a: string) => (a.toLowerCase() === source ? planned : target.getAlias(a));
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  const isLocal = async (d: string) => (await store.getDomain(d)) !== null;
  for (const canonical of planned.targets) {
    if (
      (await isLocal(canonical.slice(canonical.lastIndexOf('@') + 1))) &&
      !(await resolveRecipient(overlay, canonical))
    )
      throw new StoreError(
        'not_found',
        `the target ${canonical} does not exist here: add the user or alias first`,
      );
  }
  const probe = catchAll ? `mailwerk-alias-check-${Date.now().toString(36)}${source}` : source;
  await expandRecipient(overlay, probe, isLocal);
}
