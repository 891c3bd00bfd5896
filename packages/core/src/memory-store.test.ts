import { describeStoreConformance } from '@keyward/testing';
import { memoryStore } from './memory-store.js';

const store = memoryStore();

describeStoreConformance('memory', {
  createStore: () => store,
  dumpContents: async () => JSON.stringify(store.snapshot()),
});
