// The memory store's conformance run lives here, not in @keyward/core: core's own tests may
// not import this package, which depends on core (a dependency cycle breaks the build).
import { memoryStore } from '@keyward/core';
import { describeStoreConformance } from '../src/store-conformance.js';

const store = memoryStore();

describeStoreConformance('memory', {
  createStore: () => store,
  dumpContents: async () => JSON.stringify(store.snapshot()),
});
