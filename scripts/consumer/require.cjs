// What a CommonJS user gets: require() of the ESM-only packages (Node 20.19+, 22.12+).
// Run by scripts/consumer-test.mjs in a scratch app outside the workspace.
const names = [
  '@keyward/core',
  '@keyward/express',
  '@keyward/fastify',
  '@keyward/fetch',
  '@keyward/hono',
  '@keyward/kysely',
  '@keyward/redis',
];
for (const name of names) {
  const exported = Object.keys(require(name));
  if (exported.length === 0) throw new Error(`require('${name}') returned no exports`);
  console.log(`require('${name}'): ${exported.length} exports`);
}
