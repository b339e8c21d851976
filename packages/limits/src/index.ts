export { ConnectionLimiter } from './connections.ts';
export { type Counters, InProcessCounters, openCounters, RedisCounters } from './counters.ts';
export { clientNetwork, Greylist, type GreylistOptions } from './greylist.ts';
