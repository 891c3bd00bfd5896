export { BASE62_ALPHABET, encodeBase62, randomBase62 } from './base62.js';
export {
  busRetryDelay,
  type InvalidationBus,
  type InvalidationEvent,
  memoryBus,
  parseInvalidationEvent,
  type SubscribeOptions,
  serializeInvalidationEvent,
} from './bus.js';
export { constantTimeEqual } from './constant-time.js';
export {
  type ErrorCode,
  errorCodes,
  isErrorCode,
  isKeywardError,
  KeywardError,
} from './errors.js';
export {
  ARGON2_CHANNEL,
  type Argon2Event,
  type Argon2Options,
  hashKey,
  OWASP_ARGON2,
  verifyKeyHash,
} from './hashing.js';
export {
  createHttpHandler,
  type HttpHandler,
  type HttpOptions,
  type HttpRequest,
  type HttpResponse,
  routes,
} from './http.js';
export {
  BODY_LENGTH,
  CHECKSUM_LENGTH,
  DEFAULT_KEY_PREFIX,
  type GeneratedKey,
  generateKey,
  generateKeyId,
  isValidKeyPrefix,
  keyChecksum,
  LOOKUP_LENGTH,
  maskKey,
  type ParsedKey,
  parseKey,
  SECRET_LENGTH,
} from './key-format.js';
export { LastUsedWriter } from './last-used.js';
export { type MemoryStore, memoryStore } from './memory-store.js';
export { MAX_NAME_LENGTH, normalizeKeyName } from './names.js';
export type { InvalidKeyReason, KeyServiceOptions } from './options.js';
export { Semaphore } from './semaphore.js';
export {
  type ApiKey,
  type AuthenticatedKey,
  type CreatedApiKey,
  createKeyService,
  isKeyId,
  type KeyService,
  type VerifyResult,
} from './service.js';
export {
  compareNewestFirst,
  type InsertResult,
  KeyCollisionError,
  type KeyStore,
  type LastUsedUpdate,
  type StoredKey,
  StoreMisconfiguredError,
} from './store.js';
export { StoreUnavailableError } from './store-check.js';
