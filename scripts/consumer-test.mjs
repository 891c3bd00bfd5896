// The consumer test: what a user gets from the registry, checked outside the workspace.
// Builds, packs every publishable package as `pnpm publish` would, installs the tarballs
// with npm into a scratch app in a temporary folder (no workspace links, no `keyward-source`
// condition), with the peer dependencies at the catalog's versions, and there:
//   1. typechecks every ```ts block of the root README and of each package's README under
//      `strict`, each block a module of its own (a block preceded by
//      `<!-- consumer-test: skip -->` is left out);
//   2. require()s the packages from CommonJS;
//   3. runs the installed @keyward/testing suites (they are vitest suites: vitest is their
//      peer dependency, so the app installs it and runs it with plain node) against the
//      installed stores (memory, Kysely on PGlite and on the Postgres server, Redis) and
//      adapters (Express, Fastify, Fetch, Hono).
// Needs Postgres on 127.0.0.1:5432 and Redis on 127.0.0.1:6379. KEYWARD_KEEP_CONSUMER=1
// keeps the scratch folder.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { catalog, packAll, root, run } from './pack-packages.mjs';

const started = Date.now();
const step = (what) =>
  console.log(`\nconsumer-test: ${what} (${((Date.now() - started) / 1000).toFixed(0)} s)`);

step('build');
run('pnpm', ['build'], { cwd: root });

const scratch = mkdtempSync(join(tmpdir(), 'keyward-consumer-'));
try {
  step(`pack into ${scratch}`);
  const tarballDir = join(scratch, 'tarballs');
  mkdirSync(tarballDir);
  const packed = packAll(tarballDir);

  step('install the tarballs and the peer dependencies with npm');
  const app = join(scratch, 'app');
  mkdirSync(app);
  const versions = catalog();
  const at = (name) => `${name}@${versions[name]}`;
  writeFileSync(
    join(app, 'package.json'),
    `${JSON.stringify(
      {
        name: 'keyward-consumer',
        private: true,
        type: 'module',
        // kysely-pglite-dialect declares PGlite 0.2 to 0.4 and works with 0.5.
        overrides: { 'kysely-pglite-dialect': { '@electric-sql/pglite': '$@electric-sql/pglite' } },
        dependencies: { '@electric-sql/pglite': versions['@electric-sql/pglite'] },
      },
      null,
      2,
    )}\n`,
  );
  run(
    'npm',
    [
      'install',
      '--no-audit',
      '--no-fund',
      '--loglevel=error',
      ...packed.map((pkg) => pkg.tarball),
      ...['express', 'fastify', 'hono', '@hono/node-server', 'kysely', 'pg'].map(at),
      ...['kysely-pglite-dialect', 'ioredis'].map(at),
      ...['typescript', 'vitest', '@types/node', '@types/express', '@types/pg'].map(at),
      // The README's sign-in example.
      ...['express-session', '@types/express-session'].map(at),
    ],
    { cwd: app },
  );
  for (const pkg of packed) {
    const installed = readFileSync(join(app, 'node_modules', pkg.name, 'package.json'), 'utf8');
    if (installed.includes('keyward-source') || installed.includes('workspace:')) {
      throw new Error(`${pkg.name} as installed still names keyward-source or workspace:`);
    }
  }

  step('typecheck the README code blocks');
  const blocks = { compiled: [], skipped: [] };
  const readmes = [
    'README.md',
    ...packed.map((pkg) => join(relative(root, pkg.path), 'README.md')),
  ];
  for (const readme of readmes) {
    const found = readmeBlocks(readme, readFileSync(join(root, readme), 'utf8'));
    blocks.compiled.push(...found.compiled);
    blocks.skipped.push(...found.skipped);
  }
  mkdirSync(join(app, 'readme'));
  for (const block of blocks.compiled) {
    writeFileSync(join(app, 'readme', block.file), `${block.code}\nexport {};\n`);
  }
  writeFileSync(
    join(app, 'tsconfig.json'),
    `${JSON.stringify(
      {
        compilerOptions: {
          strict: true,
          target: 'ES2022',
          lib: ['ES2023'],
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          types: ['node'],
          noEmit: true,
          skipLibCheck: false,
        },
        include: ['readme/*.ts'],
      },
      null,
      2,
    )}\n`,
  );
  run('node', ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'], { cwd: app });
  for (const block of blocks.compiled) console.log(`  compiles: ${block.file} (${block.where})`);
  for (const block of blocks.skipped) console.log(`  skipped:  ${block.where}`);

  step('require() from CommonJS');
  copyFileSync(join(root, 'scripts/consumer/require.cjs'), join(app, 'require.cjs'));
  run('node', ['require.cjs'], { cwd: app });

  step('the installed conformance suites, with node and vitest');
  mkdirSync(join(app, 'suites'));
  for (const file of ['stores.test.ts', 'http.test.ts']) {
    // The workspace's shared helpers sit next to the suites in the scratch app.
    const source = readFileSync(join(root, 'scripts/consumer', file), 'utf8');
    writeFileSync(join(app, 'suites', file), source.replaceAll('../../test/support/', './'));
  }
  copyFileSync(join(root, 'test/support/servers.ts'), join(app, 'suites/servers.ts'));
  run(
    'node',
    [
      'node_modules/vitest/vitest.mjs',
      'run',
      'suites',
      '--testTimeout=20000',
      '--hookTimeout=60000',
    ],
    { cwd: app },
  );
  step('passed');
} finally {
  if (process.env.KEYWARD_KEEP_CONSUMER === '1') console.log(`consumer-test: kept ${scratch}`);
  else rmSync(scratch, { recursive: true, force: true });
}

/** The ```ts fences of a Markdown file, with the heading each sits under. */
function readmeBlocks(path, markdown) {
  const prefix = path === 'README.md' ? 'root' : path.split('/')[1];
  const lines = markdown.split('\n');
  const compiled = [];
  const skipped = [];
  let heading = '';
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (/^#+ /.test(line)) heading = line.replace(/^#+ /, '');
    if (!/^```ts\s*$/.test(line)) continue;
    const start = i;
    const code = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]); i++) code.push(lines[i]);
    let before = start - 1;
    while (before >= 0 && lines[before].trim() === '') before--;
    const where = `${path} line ${start + 1}, under "${heading}"`;
    if (lines[before]?.trim() === '<!-- consumer-test: skip -->') skipped.push({ where });
    else {
      const file = `${prefix}-${String(compiled.length + 1).padStart(2, '0')}.ts`;
      compiled.push({ file, where, code: code.join('\n') });
    }
  }
  if (compiled.length + skipped.length === 0) throw new Error(`no ts block in ${path}`);
  return { compiled, skipped };
}
