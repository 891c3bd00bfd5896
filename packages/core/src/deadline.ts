/**
 * `work`'s outcome if it settles within `ms`, else a rejection saying that `what` timed out.
 * A value that arrives after the deadline goes to `onLate`; a failure that arrives after it
 * is dropped, since the caller has already been answered.
 */
export function withDeadline<T>(
  work: Promise<T>,
  ms: number,
  what: string,
  onLate?: (value: T) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let late = false;
    const timer = setTimeout(() => {
      late = true;
      reject(new Error(`${what} timed out after ${ms} ms`));
    }, ms);
    work.then(
      (value) => {
        clearTimeout(timer);
        if (late) onLate?.(value);
        else resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        if (!late) reject(error);
      },
    );
  });
}
