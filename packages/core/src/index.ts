export { BASE62_ALPHABET, randomBase62 } from './base62.js';
export {
  busRetryDelay,
  deliverInvalidationEvent,
  INVALIDATION_CHANNEL,
  type InvalidationBus,
  type InvalidationDiagnostic,
  type InvalidationEvent,
  type InvalidationType,
  type KnownInvalidationType,
  type LogBusOptions,
  type LogBusSource,
  type LogDelivery,
  type LogEntry,
  type LogRead,
  logBus,
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
  guardCost,
  type HttpHandler,
  type HttpOptions,
  type HttpRequest,
  type HttpResponse,
  keyToJson,
} from './http.js';
export {
  ALL_SCOPES,
  holdsScopes,
  MAX_CREDITS,
  MAX_METADATA_BYTES,
  MAX_METADATA_DEPTH,
  MAX_RATE_LIMIT,
  MAX_SCOPES,
  MAX_WINDOW_SECONDS,
  parseCredits,
  parseRateLimit,
  refillPeriod,
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
export {
  DEFAULT_QUARANTINE_GRACE_SECONDS,
  type GitHubFeedback,
  type GitHubMatch,
  type GitHubPublicKeys,
  gitHubFeedback,
  LEAK_POLICIES,
  type LeakEvent,
  type LeakOutcome,
  type LeakPolicy,
  type LeakReport,
  MAX_QUARANTINE_GRACE_SECONDS,
  MAX_REPORTED_KEYS,
  parseGitHubAlert,
  readGitHubPublicKeys,
  verifyGitHubSignature,
} from './leak.js';
export {
  CREDIT_LEASE_FACTOR,
  type LimitedKey,
  type LimitVerdict,
  MAX_WINDOW_LEASE,
} from './limits.js';
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
  type InvalidationStats,
  isKeyId,
  type KeyService,
  type RollOptions,
  type UpdateFields,
  type VerifyResult,
} from './service.js';
export {
  type CreditClaim,
  type CreditGrant,
  type CreditRefill,
  type Credits,
  compareNewestFirst,
  earlierExpiry,
  type InsertResult,
  type KeyChanges,
  KeyCollisionError,
  type KeyMetadata,
  type KeyStore,
  type LastUsedUpdate,
  leaseGrant,
  type RateLimit,
  type RollResult,
  type StoredCredits,
  type StoredKey,
  StoreMisconfiguredError,
  type WindowClaim,
  type WindowGrant,
} from './store.js';
export { StoreUnavailableError } from './store-check.js';
