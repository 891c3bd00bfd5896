export {
  type MigrateRedisStoreOptions,
  type MigrateRedisStoreResult,
  migrateRedisStore,
} from './migrate.js';
export { type RedisBusOptions, redisBus } from './redis-bus.js';
export { type RedisStoreOptions, redisStore } from './redis-store.js';
export { type RedisStreamBusOptions, redisStreamBus } from './redis-stream-bus.js';
