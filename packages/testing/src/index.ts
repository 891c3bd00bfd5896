export { requireServices, serviceUnavailable } from './services.js';
export {
  describeCap,
  describeInsertAndFind,
  describeLastUsed,
  describeListOrder,
  describeOwnerScope,
  describeSecretHygiene,
  describeStoreConformance,
  makeStoredKey,
  type StoreConformanceOptions,
} from './store-conformance.js';
