export { type KyselyStoreOptions, kyselyStore } from './kysely-store.js';
export {
  type KeywardMigration,
  type KeywardMigrationProvider,
  keywardMigrationProvider,
  migrate,
} from './migrations.js';
export {
  DEFAULT_CHANNEL,
  type PgListenConnection,
  type PgliteListenConnection,
  type PgNotification,
  type PostgresBusOptions,
  postgresBus,
} from './postgres-bus.js';
export { type PostgresLogBusOptions, postgresLogBus } from './postgres-log-bus.js';
export { type AnyKysely, DEFAULT_LOG_TABLE, DEFAULT_TABLE, type TableOptions } from './table.js';
