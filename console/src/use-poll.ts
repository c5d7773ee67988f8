import { useEffect, useRef, useState } from 'preact/hooks';
import { Poller, type PollState, type PollerEnv } from './poller';

export interface Polled<T> extends PollState<T> {
  /** Asks again now (e.g. after an action), without waiting for the next tick; after the load under way if there is one. */
  readonly refresh: () => void;
}

const browser: PollerEnv = {
  setTimeout: (fn, ms) => window.setTimeout(fn, ms),
  clearTimeout: (id) => window.clearTimeout(id),
  now: () => Date.now(),
  hidden: () => document.hidden,
};

/**
 * Calls `load` now and then `everyMs` after each answer (a `Poller`, one per
 * mounted page: a new `everyMs` changes its interval); `everyMs` null loads
 * once, on `refresh` and when the tab shows again (`onShow` false: not
 * then). Stops while the tab is hidden and on unmount.
 */
export function usePoll<T>(load: () => Promise<T>, everyMs: number | null, opts: { onShow?: boolean } = {}): Polled<T> {
  const [state, setState] = useState<PollState<T>>({ data: null, error: null, at: null });
  const loadRef = useRef(load);
  loadRef.current = load;
  const poller = useRef<Poller<T> | null>(null);
  const first = useRef(everyMs);

  useEffect(() => {
    const p = new Poller(() => loadRef.current(), first.current, setState, browser, opts.onShow ?? true);
    poller.current = p;
    p.run();
    const onVisible = (): void => p.visible();
    document.addEventListener('visibilitychange', onVisible);
    return () => {
      p.stop();
      document.removeEventListener('visibilitychange', onVisible);
    };
  }, []);

  useEffect(() => poller.current?.setEvery(everyMs), [everyMs]);

  const refresh = useRef(() => poller.current?.run()).current;
  return { ...state, refresh };
}
