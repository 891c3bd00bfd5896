import { KeywardError } from './errors.js';

/**
 * Bounds the argon2 work in flight for the whole process. A flood of cold keys waits in a
 * bounded queue instead of filling libuv's thread pool; past the queue, callers get
 * `service_unavailable` at once, so cached traffic keeps its threads and the event loop
 * stays responsive.
 *
 * Work run with `runLow` (hashing new keys) shares the same slots but comes second: it
 * holds at most `maxLowConcurrent` of them, waits in a queue of its own (as long as
 * `maxQueue`), and a freed slot goes to a waiting `run` first. So creates can neither fill
 * the queue that verifications are refused past nor take every slot.
 */
export class Semaphore {
  #active = 0;
  #lowActive = 0;
  readonly #waiting: Array<() => void> = [];
  readonly #lowWaiting: Array<() => void> = [];

  constructor(
    readonly maxConcurrent: number,
    readonly maxQueue: number,
    readonly maxLowConcurrent: number = maxConcurrent,
  ) {}

  get pending(): number {
    return this.#waiting.length + this.#lowWaiting.length;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#active >= this.maxConcurrent) {
      if (this.#waiting.length >= this.maxQueue) throw busy();
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    } else {
      this.#active++;
    }
    try {
      return await task();
    } finally {
      this.#release(false);
    }
  }

  /** `run`, second in line: see the class comment. */
  async runLow<T>(task: () => Promise<T>): Promise<T> {
    if (this.#active >= this.maxConcurrent || this.#lowActive >= this.maxLowConcurrent) {
      if (this.#lowWaiting.length >= this.maxQueue) throw busy();
      await new Promise<void>((resolve) => this.#lowWaiting.push(resolve));
    } else {
      this.#active++;
      this.#lowActive++;
    }
    try {
      return await task();
    } finally {
      this.#release(true);
    }
  }

  /** Hands the slot straight to the next waiter, so #active never dips and lets a newcomer
   * jump the queue: a `run` waiter first, then a `runLow` one if low work may take it. */
  #release(low: boolean): void {
    if (low) this.#lowActive--;
    const next = this.#waiting.shift();
    if (next) {
      next();
      return;
    }
    const nextLow = this.#lowActive < this.maxLowConcurrent ? this.#lowWaiting.shift() : undefined;
    if (nextLow) {
      this.#lowActive++;
      nextLow();
      return;
    }
    this.#active--;
  }
}

function busy(): KeywardError {
  return new KeywardError('service_unavailable', {
    message: 'Too many API keys are being hashed or verified at once. Retry later.',
    retryAfter: 1,
  });
}
