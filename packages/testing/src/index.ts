export { type FaultyStore, faultyStore } from './faulty-store.js';
export {
  sendHeadWithoutBody,
  sendRequest,
  type TestRequest,
  type TestResponse,
} from './http-client.js';
export {
  CONTRACT_MAX_KEYS,
  describeHttpContract,
  errorBody,
  type HttpContractOptions,
  type RunningServer,
  type StoreUnderTest,
} from './http-contract.js';
export { requireServices, serviceUnavailable } from './services.js';
export {
  describeCap,
  describeInsertAndFind,
  describeLastUsed,
  describeListOrder,
  describeOwnerScope,
  describeReadiness,
  describeSecretHygiene,
  describeStoreConformance,
  makeStoredKey,
  type StoreConformanceOptions,
} from './store-conformance.js';
