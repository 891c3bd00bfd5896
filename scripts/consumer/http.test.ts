// The HTTP contract suite of the installed @keyward/testing, against the installed Express,
// Fastify and Hono adapters, over real HTTP on loopback, on the host apps the workspace's own
// tests use. Run by scripts/consumer-test.mjs in a scratch app outside the workspace, which
// copies test/support/servers.ts next to this file (it imports only installed packages).
import { describeHttpContract } from '@keyward/testing';
import { startServer } from '../../test/support/servers.js';

describeHttpContract('express (installed)', { startServer: startServer.express });
describeHttpContract('fastify (installed)', { startServer: startServer.fastify });
describeHttpContract('hono (installed)', { startServer: startServer.hono });
