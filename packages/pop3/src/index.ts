export { type Pop3Options, Pop3Service, topOf, uidl } from './server.ts';
