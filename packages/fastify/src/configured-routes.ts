import { guardCost } from '@keyward/core';
import type { FastifyInstance, onRequestHookHandler } from 'fastify';
import { runScopedGuard } from './guard.js';

/**
 * The hook behind `{ config: { apiKey: true } }` and `{ config: { apiKey: { scopes, cost } } }`.
 * A route without the option pays one read of its config; one with it runs the guard of
 * the keyward in its scope (with the scopes it names), or fails closed.
 */
const guardConfiguredRoutes: onRequestHookHandler = (request, reply, done) => {
  const option = request.routeOptions.config?.apiKey;
  if (!option) {
    done();
    return;
  }
  if (option === true) {
    runScopedGuard(request, reply, done, undefined, undefined);
    return;
  }
  runScopedGuard(request, reply, done, option.scopes, costOf(option));
};

// A route's cost, checked once per route (the config object is the route's own).
const costs = new WeakMap<object, number>();

function costOf(option: { cost?: number }): number | undefined {
  if (option.cost === undefined) return undefined;
  let cost = costs.get(option);
  if (cost === undefined) {
    cost = guardCost(option.cost);
    costs.set(option, cost);
  }
  return cost;
}

const hooked = new WeakSet<FastifyInstance>();

/**
 * Makes `{ config: { apiKey: true } }` hold on every route of the app, whatever the order
 * of `register` and the route declarations. An `onRoute` hook would see only the routes
 * declared after it, and serve the earlier ones with no key. A lifecycle hook does not
 * have that hole: Fastify copies a hook added to an instance into every scope that
 * instance already holds and every scope created later, and settles each route's hooks
 * only when the app boots. The hook goes on the root instance, once, so that a route
 * outside the scope keyward was registered in is refused (500) instead of served.
 */
export function guardConfiguredRoutesOf(fastify: FastifyInstance): void {
  const root = rootOf(fastify);
  if (hooked.has(root)) return;
  hooked.add(root);
  root.addHook('onRequest', guardConfiguredRoutes);
}

/** Fastify builds each scope with `Object.create(parent)`: the root is the last instance up
 * the prototype chain. */
function rootOf(fastify: FastifyInstance): FastifyInstance {
  let root = fastify;
  for (;;) {
    const parent: unknown = Object.getPrototypeOf(root);
    if (!isFastifyInstance(parent)) return root;
    root = parent;
  }
}

function isFastifyInstance(value: unknown): value is FastifyInstance {
  const v = value as Partial<FastifyInstance> | null;
  return typeof v?.addHook === 'function' && typeof v.register === 'function';
}
