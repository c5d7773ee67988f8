/**
 * Bounds a promise in time: rejects with `onTimeout()` when `p` has not
 * settled within `ms`. `p` itself goes on (a publish cannot be taken back);
 * its late rejection is swallowed so it is never unhandled.
 */
export function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const giveUp = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  p.catch(() => undefined);
  return Promise.race([p, giveUp]).finally(() => clearTimeout(timer));
}
