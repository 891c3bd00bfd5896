import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain ESM build script, without types.
import { buildDashboardAssets } from '../scripts/build-dashboard.mjs';
import { createHttpHandler, createKeyService, memoryStore } from '../src/index.js';

describe('the dashboard assets', () => {
  it('src/dashboard-assets.ts is what dashboard/ builds to (run pnpm --dir packages/core build:dashboard)', () => {
    const committed = readFileSync(new URL('../src/dashboard-assets.ts', import.meta.url), 'utf8');
    expect(committed).toBe(buildDashboardAssets());
  });

  it('dashboard: true without authorize is refused when the handler is made', () => {
    const service = createKeyService({ store: memoryStore() });
    expect(() => createHttpHandler(service, { dashboard: true })).toThrow(
      /dashboard: true needs an authorize/,
    );
  });
});
