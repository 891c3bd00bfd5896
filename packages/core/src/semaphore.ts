import { KeywardError } from './errors.js';

/**
 * Bounds the argon2 work in flight for the whole process. A flood of cold keys waits in a
 * bounded queue instead of filling libuv's thread pool; past the queue, callers get
 * `service_unavailable` at once, so cached traffic keeps its threads and the event loop
 * stays responsive.
 */
export class Semaphore {
  #active = 0;
  readonly #waiting: Array<() => void> = [];

  constructor(
    readonly maxConcurrent: number,
    readonly maxQueue: number,
  ) {}

  get pending(): number {
    return this.#waiting.length;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#active >= this.maxConcurrent) {
      if (this.#waiting.length >= this.maxQueue) {
        throw new KeywardError('service_unavailable', {
          message: 'Too many API keys are being hashed or verified at once. Retry later.',
          retryAfter: 1,
        });
      }
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    } else {
      this.#active++;
    }
    try {
      return await task();
    } finally {
      // Hand the slot straight to the next waiter, so #active never dips and lets a
      // newcomer jump the queue.
      const next = this.#waiting.shift();
      if (next) next();
      else this.#active--;
    }
  }
}
