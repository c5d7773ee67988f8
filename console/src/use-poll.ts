import { useCallback, useEffect, useRef, useState } from 'preact/hooks';

export interface Polled<T> {
  readonly data: T | null;
  readonly error: unknown;
  /** When the last answer (or error) came (ms epoch), null before the first. */
  readonly at: number | null;
  /** Asks again now (e.g. after an action), without waiting for the next tick. */
  readonly refresh: () => void;
}

/**
 * Calls `load` now and then `everyMs` after each answer (never two at once,
 * so a slow daemon is not piled on); `everyMs` null loads once. Stops while
 * the tab is hidden and on unmount.
 */
export function usePoll<T>(load: () => Promise<T>, everyMs: number | null): Polled<T> {
  const [state, setState] = useState<{ data: T | null; error: unknown; at: number | null }>({ data: null, error: null, at: null });
  const loadRef = useRef(load);
  loadRef.current = load;
  const timer = useRef<number | null>(null);
  const alive = useRef(true);
  const busy = useRef(false);

  const run = useCallback(async (): Promise<void> => {
    if (busy.current || !alive.current) return;
    busy.current = true;
    if (timer.current !== null) clearTimeout(timer.current);
    timer.current = null;
    try {
      const data = await loadRef.current();
      if (alive.current) setState({ data, error: null, at: Date.now() });
    } catch (error) {
      if (alive.current) setState((s) => ({ data: s.data, error, at: Date.now() }));
    } finally {
      busy.current = false;
      if (alive.current && everyMs !== null && !document.hidden) timer.current = window.setTimeout(() => void run(), everyMs);
    }
  }, [everyMs]);

  useEffect(() => {
    alive.current = true;
    void run();
    const onVisible = (): void => {
      if (!document.hidden && timer.current === null) void run();
    };
    document.addEventListener('visibilitychange', onVisible);
    return () => {
      alive.current = false;
      document.removeEventListener('visibilitychange', onVisible);
      if (timer.current !== null) clearTimeout(timer.current);
    };
  }, [run]);

  return { ...state, refresh: () => void run() };
}
