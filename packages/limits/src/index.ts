export { ConnectionLimiter } from './connections.ts';
export { type Counters, InProcessCounters } from './counters.ts';
export { clientNetwork, Greylist, type GreylistOptions } from './greylist.ts';
