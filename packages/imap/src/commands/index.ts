/** The command table: each command by name (`UID X` for the UID forms), one file per command or small family. */
import { APPEND } from './append.ts';
import { AUTHENTICATE, LOGIN, STARTTLS } from './auth.ts';
import { CAPABILITY, ID, LOGOUT, NOOP } from './capability.ts';
import { COPY, MOVE, UID_COPY, UID_MOVE } from './copy.ts';
import { EXPUNGE, UID_EXPUNGE } from './expunge.ts';
import { FETCH, UID_FETCH } from './fetch.ts';
import { LIST, LSUB } from './list.ts';
import { CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE } from './mailbox.ts';
import { GETQUOTA, GETQUOTAROOT, SETQUOTA } from './quota.ts';
import { CANCELUPDATE, SEARCH, UID_SEARCH } from './search.ts';
import { CHECK, CLOSE, EXAMINE, SELECT, UNSELECT } from './select.ts';
import { COMPRESS, ENABLE, IDLE, NAMESPACE, NOTIFY, UNAUTHENTICATE } from './session.ts';
import { SORT, THREAD, UID_SORT, UID_THREAD } from './sort.ts';
import { STATUS } from './status.ts';
import { STORE, UID_STORE } from './store.ts';
import type { Command } from './types.ts';

export const COMMANDS = new Map<string, Command>([
  ['CAPABILITY', CAPABILITY],
  ['NOOP', NOOP],
  ['LOGOUT', LOGOUT],
  ['ID', ID],
  ['STARTTLS', STARTTLS],
  ['LOGIN', LOGIN],
  ['AUTHENTICATE', AUTHENTICATE],
  ['ENABLE', ENABLE],
  ['NOTIFY', NOTIFY],
  ['NAMESPACE', NAMESPACE],
  ['UNAUTHENTICATE', UNAUTHENTICATE],
  ['COMPRESS', COMPRESS],
  ['IDLE', IDLE],
  ['LIST', LIST],
  ['LSUB', LSUB],
  ['CREATE', CREATE],
  ['DELETE', DELETE],
  ['RENAME', RENAME],
  ['SUBSCRIBE', SUBSCRIBE],
  ['UNSUBSCRIBE', UNSUBSCRIBE],
  ['SELECT', SELECT],
  ['EXAMINE', EXAMINE],
  ['STATUS', STATUS],
  ['APPEND', APPEND],
  ['CHECK', CHECK],
  ['CLOSE', CLOSE],
  ['UNSELECT', UNSELECT],
  ['EXPUNGE', EXPUNGE],
  ['UID EXPUNGE', UID_EXPUNGE],
  ['SEARCH', SEARCH],
  ['UID SEARCH', UID_SEARCH],
  ['CANCELUPDATE', CANCELUPDATE],
  ['SORT', SORT],
  ['UID SORT', UID_SORT],
  ['THREAD', THREAD],
  ['UID THREAD', UID_THREAD],
  ['FETCH', FETCH],
  ['UID FETCH', UID_FETCH],
  ['STORE', STORE],
  ['UID STORE', UID_STORE],
  ['COPY', COPY],
  ['UID COPY', UID_COPY],
  ['MOVE', MOVE],
  ['UID MOVE', UID_MOVE],
  ['GETQUOTAROOT', GETQUOTAROOT],
  ['GETQUOTA', GETQUOTA],
  ['SETQUOTA', SETQUOTA],
]);
