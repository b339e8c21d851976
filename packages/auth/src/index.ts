export { checkLogin, type LoginSubject, type LoginVerdict } from './login.ts';
export {
  ARGON2_PARAMS,
  type HashScheme,
  hashPassword,
  hashScheme,
  importHash,
  needsRehash,
  verifyPassword,
} from './passwords.ts';
export { sha512Crypt } from './sha512-crypt.ts';
export { type AuthFailure, AuthThrottle, type ThrottleOptions, type ThrottleVerdict } from './throttle.ts';
