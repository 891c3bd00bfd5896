import { defineConfig } from 'vitest/config';

// Workspace packages resolve to their TypeScript sources through the `keyward-source`
// export condition, so tests and demos never need a build first.
// Vite's own defaults follow the source condition (vite is not a direct dependency here).
const serverConditions = ['keyward-source', 'module', 'node', 'development|production'];
const project = (name: string, include: string[]) => ({
  extends: true as const,
  test: { name, include },
});

export default defineConfig({
  resolve: { conditions: serverConditions },
  ssr: { resolve: { conditions: serverConditions } },
  test: {
    testTimeout: 20_000,
    hookTimeout: 60_000,
    projects: [
      project('core', ['packages/core/test/**/*.test.ts']),
      project('testing', ['packages/testing/test/**/*.test.ts']),
      project('express', ['packages/express/test/**/*.test.ts']),
      project('fastify', ['packages/fastify/test/**/*.test.ts']),
      project('kysely', ['packages/kysely/test/**/*.test.ts']),
      project('redis', ['packages/redis/test/**/*.test.ts']),
      project('fetch', ['packages/fetch/test/**/*.test.ts']),
      project('hono', ['packages/hono/test/**/*.test.ts']),
      project('cli', ['packages/cli/test/**/*.test.ts']),
      project('integration', ['test/**/*.test.ts']),
    ],
  },
});
