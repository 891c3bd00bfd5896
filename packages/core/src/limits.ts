import { LRUCache } from 'lru-cache';
import { KeywardError } from './errors.js';
import { refillPeriod } from './key-fields.js';
import type { Credits, KeyStore, RateLimit } from './store.js';

/** What the limiter reads of a verified key. */
export interface LimitedKey {
  readonly id: string;
  readonly ownerId: string;
  readonly rateLimit: Readonly<RateLimit> | null;
  readonly credits: Readonly<Credits> | null;
}

/** The limiter's answer for one request: admitted, with the header fields to send, or
 * refused with the error to answer (and the same header fields). */
export type LimitVerdict =
  | { ok: true; headers: Record<string, string> | undefined }
  | { ok: false; error: KeywardError; headers: Record<string, string> | undefined };

export interface LimiterDeps {
  store: KeyStore;
  /** A store call with the service's deadline and failure mapping; `onLateResult` gets the
   * value of a call that answered after its deadline. */
  callStore<T>(call: () => Promise<T>, onLateResult?: (value: T) => void): Promise<T>;
  nowMs(): number;
  onError(error: unknown): void;
  /** Keys holding leases on this instance, at most. */
  maxKeys: number;
  /** Drops a key from the verification cache (its record changed under us). */
  invalidateKey(id: string): void;
}

/** Largest window lease (docs/design.md, "The bound across N instances"). */
export const MAX_WINDOW_LEASE = 1000;
/** How long a failed top-up (a claim ahead of need) keeps further ones from being tried. */
const TOP_UP_PAUSE_MS = 1000;
/** A credit lease is this many times the request's cost. */
export const CREDIT_LEASE_FACTOR = 20;
/** How long an instance takes a credit balance found empty at its word before it asks the
 * store again (another instance may have returned a lease, a host may have topped it up). */
const CREDITS_RECHECK_MS = 1000;

/** One key's leases on this instance. */
class KeyLeases {
  constructor(readonly ownerId: string) {}
  /** Start of the window the lease is of (epoch ms); -1 before any. */
  windowStart = -1;
  /** Units of the window held here, unspent. */
  windowLeft = 0;
  /** What the store had left after the last claim. */
  windowStoreLeft = 0;
  /** The store granted nothing: refuse until the window ends. */
  windowExhausted = false;
  windowClaim: Promise<void> | null = null;
  /** A window top-up failed: none is tried before this time (epoch ms). */
  windowTopUpPausedUntil = 0;
  /** The same for credits. */
  creditsTopUpPausedUntil = 0;

  creditsLeft = 0;
  /** The balance the lease came from (its `resetAt`). */
  creditsResetAt = 0;
  /** The next refill: past it, the lease is of an old balance and is dropped. */
  creditsValidUntil = Number.POSITIVE_INFINITY;
  creditsExhaustedUntil = 0;
  creditsClaim: Promise<unknown> | null = null;

  /** The `RateLimit-Policy` value, made once per limit rather than per request. */
  policy = '';
  policyOf: RateLimit | null = null;
}

export type Limiter = ReturnType<typeof createLimiter>;

/**
 * Per-key rate limits and credits, spent from leases claimed from the store
 * (docs/design.md, "Rate limits and credits"). A request whose key's lease covers its cost
 * is answered synchronously, with no store call and no promise.
 */
export function createLimiter(deps: LimiterDeps) {
  const { store, callStore, nowMs, onError } = deps;
  const returning = new Set<Promise<void>>();
  // Lease claims in flight: `close()` waits for them, so what they grant comes back too.
  const claiming = new Set<Promise<unknown>>();
  const leases = new LRUCache<string, KeyLeases>({
    max: deps.maxKeys,
    // An evicted or forgotten key gives back what it holds.
    dispose: (state, id) => giveBack(id, state),
  });

  function stateOf(key: LimitedKey): KeyLeases {
    let state = leases.get(key.id);
    if (!state) {
      state = new KeyLeases(key.ownerId);
      leases.set(key.id, state);
    }
    return state;
  }

  /** Admits or refuses one request of `cost` units: synchronously when the leases held
   * here decide it, else after one claim per kind. A store failure rejects with
   * `service_unavailable`. */
  function check(key: LimitedKey, cost: number): LimitVerdict | Promise<LimitVerdict> {
    const now = nowMs();
    const state = stateOf(key);
    const limit = key.rateLimit;
    let tookWindow = false;
    if (limit) {
      moveToWindow(state, limit, now);
      if (state.windowLeft >= cost) {
        state.windowLeft -= cost;
        tookWindow = true;
        if (state.windowLeft * 2 < windowLeaseSize(limit)) topUpWindow(key, limit, state, now);
      } else if (state.windowExhausted) {
        return refusedByWindow(limit, state, now);
      } else {
        return checkSlowly(key, cost, state, false);
      }
    }
    const credits = key.credits;
    if (credits) {
      if (credits.strict) return checkSlowly(key, cost, state, tookWindow);
      dropOutdatedCredits(state, now);
      if (state.creditsLeft >= cost) {
        state.creditsLeft -= cost;
        if (state.creditsLeft * 2 < cost * CREDIT_LEASE_FACTOR) {
          topUpCredits(key, credits, cost, state, now);
        }
      } else if (now < state.creditsExhaustedUntil) {
        if (tookWindow) state.windowLeft += cost;
        return refusedByCredits(credits, limit, state, now);
      } else {
        return checkSlowly(key, cost, state, tookWindow);
      }
    }
    return { ok: true, headers: limit ? headersFor(limit, state, now) : undefined };
  }

  async function checkSlowly(
    key: LimitedKey,
    cost: number,
    state: KeyLeases,
    tookWindow: boolean,
  ): Promise<LimitVerdict> {
    const limit = key.rateLimit;
    if (limit && !tookWindow && !(await takeWindow(key, limit, cost, state))) {
      return refusedByWindow(limit, state, nowMs());
    }
    const credits = key.credits;
    if (credits) {
      let took: boolean;
      try {
        took = await takeCredits(key, credits, cost, state);
      } catch (error) {
        if (limit) putBackWindow(state, cost);
        throw error;
      }
      if (!took) {
        if (limit) putBackWindow(state, cost);
        return refusedByCredits(credits, limit, state, nowMs());
      }
    }
    const now = nowMs();
    return { ok: true, headers: limit ? headersFor(limit, state, now) : undefined };
  }

  /** A request refused by its credits costs nothing: the window unit goes back to the
   * lease it came from (if that window still holds, else it is moot). */
  function putBackWindow(state: KeyLeases, cost: number): void {
    state.windowLeft += cost;
  }

  function moveToWindow(state: KeyLeases, limit: RateLimit, now: number): void {
    const start = windowStartAt(limit, now);
    if (state.windowStart === start) return;
    // The old window's lease is moot: the store counts the new window from 0.
    state.windowStart = start;
    state.windowLeft = 0;
    state.windowStoreLeft = limit.limit;
    state.windowExhausted = false;
  }

  async function takeWindow(
    key: LimitedKey,
    limit: RateLimit,
    cost: number,
    state: KeyLeases,
  ): Promise<boolean> {
    for (;;) {
      // Forgotten (a bus event) while waiting: go on with the key's fresh leases.
      if (leases.peek(key.id) !== state) state = stateOf(key);
      moveToWindow(state, limit, nowMs());
      if (state.windowLeft >= cost) {
        state.windowLeft -= cost;
        return true;
      }
      if (state.windowExhausted || cost > limit.limit) return false;
      // The store had less than this request needs at its last answer: no use asking.
      if (cost - state.windowLeft > state.windowStoreLeft) return false;
      if (state.windowClaim) {
        await state.windowClaim;
        continue;
      }
      const want = Math.max(cost, windowLeaseSize(limit));
      await claimWindowLease(key, limit, state, want, cost - state.windowLeft);
    }
  }

  /** Starts the claim for `key`'s window lease (the one in flight for it on this
   * instance): requests that find the lease empty meanwhile wait for it. */
  function claimWindowLease(
    key: LimitedKey,
    limit: RateLimit,
    state: KeyLeases,
    want: number,
    atLeast: number,
  ): Promise<void> {
    const { id, ownerId } = key;
    const windowStart = state.windowStart;
    const claim = { windowStart, limit: limit.limit, want, atLeast };
    const apply = (grant: { granted: number; remaining: number }) => {
      if (leases.peek(id) !== state || state.windowStart !== windowStart) {
        // Forgotten or moved on while the claim ran: give the grant straight back.
        if (grant.granted > 0) track(store.returnWindow(ownerId, id, windowStart, grant.granted));
        return;
      }
      state.windowLeft += grant.granted;
      state.windowStoreLeft = grant.remaining;
      // Nothing left at all: refuse until the window ends, with no store call. Some left,
      // but less than this request's cost: a cheaper request may still have it.
      if (grant.granted === 0 && grant.remaining === 0) state.windowExhausted = true;
    };
    const running = inFlight(
      () => store.claimWindow(ownerId, id, claim),
      apply,
      () => {
        state.windowClaim = null;
      },
    );
    state.windowClaim = running;
    return running;
  }

  /** A lease claim through `callStore`, its grant applied (also one that lands after the
   * deadline), and counted in flight until it settles; `settled` then frees its key's slot. */
  function inFlight<G, R>(
    claim: () => Promise<G>,
    apply: (grant: G) => R,
    settled: () => void,
  ): Promise<R> {
    const running = callStore(claim, apply)
      .then(apply)
      .finally(() => {
        settled();
        claiming.delete(running);
      });
    claiming.add(running);
    return running;
  }

  /**
   * Claims ahead: once a lease is half spent, tops it up to a whole lease in the background
   * while requests go on spending what is left, so a busy key's requests do not all wait
   * for a store round trip each time a lease runs out. What the instance holds never
   * exceeds one lease, as without it. A failed top-up (already reported by `callStore`) is
   * not tried again for a second; requests that then find the lease empty claim as usual.
   */
  function topUpWindow(key: LimitedKey, limit: RateLimit, state: KeyLeases, now: number): void {
    if (state.windowClaim !== null || state.windowExhausted || state.windowStoreLeft <= 0) return;
    if (now < state.windowTopUpPausedUntil) return;
    const want = windowLeaseSize(limit) - state.windowLeft;
    if (want <= 0) return;
    // Paused from the start, so no second top-up starts while a failure settles.
    state.windowTopUpPausedUntil = now + TOP_UP_PAUSE_MS;
    claimWindowLease(key, limit, state, want, 1).then(
      () => {
        state.windowTopUpPausedUntil = 0;
      },
      () => {},
    );
  }

  function dropOutdatedCredits(state: KeyLeases, now: number): void {
    if (now < state.creditsValidUntil) return;
    // A refill came: what is held is of the old balance, which the store has replaced.
    state.creditsLeft = 0;
    state.creditsExhaustedUntil = 0;
    state.creditsValidUntil = Number.POSITIVE_INFINITY;
  }

  async function takeCredits(
    key: LimitedKey,
    credits: Readonly<Credits>,
    cost: number,
    state: KeyLeases,
  ): Promise<boolean> {
    const { id, ownerId } = key;
    for (;;) {
      if (leases.peek(id) !== state) state = stateOf(key);
      const now = nowMs();
      dropOutdatedCredits(state, now);
      if (!credits.strict && state.creditsLeft >= cost) {
        state.creditsLeft -= cost;
        return true;
      }
      if (!credits.strict && now < state.creditsExhaustedUntil) return false;
      if (state.creditsClaim && !credits.strict) {
        await state.creditsClaim;
        continue;
      }
      const period = credits.refill ? refillPeriod(credits.refill.every, now) : null;
      const claim = credits.strict
        ? { want: cost, atLeast: cost, periodStart: period?.start ?? null }
        : {
            want: cost * CREDIT_LEASE_FACTOR,
            atLeast: cost - state.creditsLeft,
            periodStart: period?.start ?? null,
          };
      if (credits.strict) {
        // One atomic call per request, nothing held: the balance is exact.
        const grant = await callStore(() => store.claimCredits(ownerId, id, claim));
        if (grant === null) throw keyChanged(id);
        return grant.granted > 0;
      }
      const outcome = await claimCreditsLease(
        key,
        state,
        cost * CREDIT_LEASE_FACTOR,
        cost - state.creditsLeft,
        now,
        period,
      );
      if (outcome === 'gone') throw keyChanged(id);
      // Less left than this request's cost, but not nothing: refused, and not cached.
      if (outcome === 'refused' && state.creditsLeft < cost) return false;
    }
  }

  /** Starts the claim for `key`'s credit lease (the one in flight for it on this
   * instance); resolves to what came of it for `state`: `gone` when the key has no credits
   * any more, `refused` when nothing was granted, `forgotten` when `state` was dropped
   * meanwhile (the grant went straight back). */
  function claimCreditsLease(
    key: LimitedKey,
    state: KeyLeases,
    want: number,
    atLeast: number,
    now: number,
    period: { start: number; next: number } | null,
  ): Promise<'granted' | 'refused' | 'gone' | 'forgotten'> {
    const { id, ownerId } = key;
    const claim = { want, atLeast, periodStart: period?.start ?? null };
    const apply = (grant: { granted: number; remaining: number; resetAt: number } | null) => {
      if (grant === null) return 'gone';
      if (leases.peek(id) !== state) {
        if (grant.granted > 0)
          track(store.returnCredits(ownerId, id, grant.granted, grant.resetAt));
        return 'forgotten';
      }
      if (state.creditsLeft > 0 && state.creditsResetAt !== grant.resetAt) {
        // The balance was reset (refill, update) since the units held were claimed.
        state.creditsLeft = 0;
      }
      state.creditsLeft += grant.granted;
      state.creditsResetAt = grant.resetAt;
      state.creditsValidUntil = period?.next ?? Number.POSITIVE_INFINITY;
      if (grant.granted > 0) return 'granted';
      if (grant.remaining === 0) {
        state.creditsExhaustedUntil = Math.min(now + CREDITS_RECHECK_MS, state.creditsValidUntil);
      }
      return 'refused';
    };
    const running = inFlight(
      () => store.claimCredits(ownerId, id, claim),
      apply,
      () => {
        state.creditsClaim = null;
      },
    );
    state.creditsClaim = running;
    return running;
  }

  /** Claims credits ahead, as `topUpWindow` does for the window: once less than half a
   * lease (`CREDIT_LEASE_FACTOR` × this request's cost) is held, tops it up to a lease in
   * the background. */
  function topUpCredits(
    key: LimitedKey,
    credits: Readonly<Credits>,
    cost: number,
    state: KeyLeases,
    now: number,
  ): void {
    if (state.creditsClaim !== null || now < state.creditsExhaustedUntil) return;
    if (now < state.creditsTopUpPausedUntil) return;
    const want = cost * CREDIT_LEASE_FACTOR - state.creditsLeft;
    if (want <= 0) return;
    const period = credits.refill ? refillPeriod(credits.refill.every, now) : null;
    state.creditsTopUpPausedUntil = now + TOP_UP_PAUSE_MS;
    claimCreditsLease(key, state, want, 1, now, period).then(
      (outcome) => {
        state.creditsTopUpPausedUntil = 0;
        // The key has no credits any more: read it again, as a request that claimed would.
        if (outcome === 'gone') keyChanged(key.id);
      },
      () => {},
    );
  }

  /** The key's record has no credits (changed or deleted since it was cached): read it
   * again next time; this request gets a 503 to retry. */
  function keyChanged(id: string): KeywardError {
    deps.invalidateKey(id);
    leases.delete(id);
    return new KeywardError('service_unavailable', { retryAfter: 1 });
  }

  function refusedByWindow(limit: RateLimit, state: KeyLeases, now: number): LimitVerdict {
    return {
      ok: false,
      error: new KeywardError('rate_limited', { retryAfter: secondsLeft(limit, state, now) }),
      headers: headersFor(limit, state, now),
    };
  }

  function refusedByCredits(
    credits: Readonly<Credits>,
    limit: RateLimit | null,
    state: KeyLeases,
    now: number,
  ): LimitVerdict {
    const retryAfter = credits.refill
      ? Math.max(1, Math.ceil((refillPeriod(credits.refill.every, now).next - now) / 1000))
      : undefined;
    return {
      ok: false,
      error: new KeywardError('credits_exhausted', { retryAfter }),
      headers: limit ? headersFor(limit, state, now) : undefined,
    };
  }

  function giveBack(id: string, state: KeyLeases): void {
    if (state.windowLeft > 0 && state.windowStart >= 0) {
      track(store.returnWindow(state.ownerId, id, state.windowStart, state.windowLeft));
      state.windowLeft = 0;
    }
    if (state.creditsLeft > 0 && nowMs() < state.creditsValidUntil) {
      track(store.returnCredits(state.ownerId, id, state.creditsLeft, state.creditsResetAt));
    }
    state.creditsLeft = 0;
  }

  function track(work: Promise<void>): void {
    const settled = callStore(() => work)
      .catch(onError)
      .finally(() => returning.delete(settled));
    returning.add(settled);
  }

  /** The header fields for an answer to a limited key that spends nothing (a refusal
   * before the limit check): its window as this instance knows it. `undefined` for a key
   * with credits only. */
  function headersOf(key: LimitedKey): Record<string, string> | undefined {
    const limit = key.rateLimit;
    if (!limit) return undefined;
    const now = nowMs();
    const state = stateOf(key);
    moveToWindow(state, limit, now);
    return headersFor(limit, state, now);
  }

  /**
   * Puts back what an admitted request of `cost` took, when it was refused after all (a
   * management request refused for its body, say): refused requests cost nothing. Into
   * the lease it came from, while that lease still holds (the same window, the same
   * balance); strict credits, taken from the store itself, are not put back.
   */
  function refund(key: LimitedKey, cost: number): void {
    const state = leases.peek(key.id);
    if (!state) return;
    const now = nowMs();
    const limit = key.rateLimit;
    if (limit) {
      if (state.windowStart === windowStartAt(limit, now)) state.windowLeft += cost;
    }
    const credits = key.credits;
    if (credits && !credits.strict && now < state.creditsValidUntil) state.creditsLeft += cost;
  }

  return {
    check,
    headersOf,
    refund,
    /** Gives back what this instance holds for `id` and forgets it. */
    forget(id: string): void {
      leases.delete(id);
    },
    /** `forget`, and waits until what it gave back has reached the store. */
    async release(id: string): Promise<void> {
      leases.delete(id);
      await Promise.all(returning);
    },
    /** Credits held here, unspent, for `id`: part of its balance as this instance knows it. */
    creditsHeld(id: string): number {
      return leases.peek(id)?.creditsLeft ?? 0;
    },
    /** Gives every unspent lease back; resolves once the store has them (failures go to
     * `onError`). */
    async close(): Promise<void> {
      leases.clear();
      // A claim that lands now finds its key forgotten and gives its grant straight back.
      await Promise.allSettled(claiming);
      await Promise.all(returning);
    },
  };
}

/** The window lease an instance claims for `limit`, before the store shrinks it as the
 * window runs low (a request costing more claims its cost). */
function windowLeaseSize(limit: RateLimit): number {
  return Math.min(MAX_WINDOW_LEASE, Math.ceil(limit.limit / 10));
}

/** The start (epoch ms) of the epoch-aligned window of `limit` that holds `now`. */
function windowStartAt(limit: RateLimit, now: number): number {
  return now - (now % (limit.windowSec * 1000));
}

function secondsLeft(limit: RateLimit, state: KeyLeases, now: number): number {
  const end = state.windowStart + limit.windowSec * 1000;
  return Math.max(1, Math.ceil((end - now) / 1000));
}

/** The IETF rate-limit header fields (structured-field syntax) for a limited key. */
function headersFor(limit: RateLimit, state: KeyLeases, now: number): Record<string, string> {
  const remaining = Math.max(0, state.windowStoreLeft + state.windowLeft);
  if (state.policyOf !== limit) {
    state.policyOf = limit;
    state.policy = `"window";q=${limit.limit};w=${limit.windowSec}`;
  }
  return {
    'RateLimit-Policy': state.policy,
    RateLimit: `"window";r=${remaining};t=${secondsLeft(limit, state, now)}`,
  };
}
