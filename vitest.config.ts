import { defineConfig } from 'vitest/config';

// Workspace packages resolve to their TypeScript sources through the `keyward-source`
// export condition, so tests and demos never need a build first.
const conditions = ['keyward-source', 'node', 'import', 'default'];
const project = (name: string, include: string[]) => ({
  extends: true as const,
  test: { name, include },
});

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: ['keyward-source'] } },
  test: {
    testTimeout: 20_000,
    hookTimeout: 60_000,
    projects: [
      project('core', ['packages/core/src/**/*.test.ts']),
      project('testing', ['packages/testing/src/**/*.test.ts']),
      project('express', ['packages/express/src/**/*.test.ts']),
      project('fastify', ['packages/fastify/src/**/*.test.ts']),
      project('kysely', ['packages/kysely/src/**/*.test.ts']),
      project('redis', ['packages/redis/src/**/*.test.ts']),
      project('integration', ['test/**/*.test.ts']),
    ],
  },
});
