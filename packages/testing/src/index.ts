export { CHEAP_ARGON2 } from './cheap-argon2.js';
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
  type ServerSetup,
  type StoreUnderTest,
} from './http-contract.js';
export { describeLifecycleContract, type LifecycleContext } from './http-contract-lifecycle.js';
export { describeSessionContract, type SessionContractOptions } from './http-session-contract.js';
export { CREATE_FIELDS, KEY_FIELDS } from './key-fields.js';
export { type OpenApiResponseCheck, openApiResponseChecker } from './openapi-check.js';
export { requireServices, serviceUnavailable } from './services.js';
export {
  describeCap,
  describeInsertAndFind,
  describeLastUsed,
  describeLeakMark,
  describeLeases,
  describeLifecycle,
  describeListOrder,
  describeOwnerScope,
  describeReadiness,
  describeSecretHygiene,
  describeStoreConformance,
  makeStoredKey,
  type StoreConformanceOptions,
} from './store-conformance.js';
