export { BASE62_ALPHABET, randomBase62 } from './base62.js';
export {
  busRetryDelay,
  deliverInvalidationEvent,
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
  type Authorize,
  type AuthorizedUser,
  type AuthResult,
  createHttpHandler,
  type GuardOutcome,
  type HttpHandler,
  type HttpOptions,
  type HttpRequest,
  type HttpResponse,
  keyToJson,
} from './http.js';
export {
  ALL_SCOPES,
  holdsScopes,
  MAX_METADATA_BYTES,
  MAX_METADATA_DEPTH,
  MAX_SCOPES,
} from './key-fields.js';
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
export { type MemoryStore, memoryStore } from './memory-store.js';
export { MAX_NAME_LENGTH, normalizeKeyName } from './names.js';
export { keyFieldSchemas, type OpenApiOptions, openApiDocument } from './openapi.js';
export type { InvalidKeyReason, KeyServiceOptions } from './options.js';
export { hasSameOriginProof, parseTrustedOrigins } from './origin.js';
export {
  type ApiKey,
  type AuthenticatedKey,
  type CreatedApiKey,
  type CreateOptions,
  createKeyService,
  isKeyId,
  type KeyService,
  type RollOptions,
  type UpdateFields,
  type VerifyResult,
} from './service.js';
export {
  compareNewestFirst,
  earlierExpiry,
  type InsertResult,
  type KeyChanges,
  KeyCollisionError,
  type KeyMetadata,
  type KeyStore,
  type LastUsedUpdate,
  type RollResult,
  type StoredKey,
  StoreMisconfiguredError,
} from './store.js';
export { StoreUnavailableError } from './store-check.js';
