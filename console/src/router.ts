// A hash router in a dozen lines: `#/parked`, `#/notifications/<id>`. The
// hash never reaches the server, so every page is the same index.html.
import { useEffect, useState } from 'preact/hooks';

export interface Route {
  /** First path segment: `overview`, `origins`, `parked`, `notifications`, `merchants`. */
  readonly page: string;
  /** The rest, decoded (e.g. a notification id). */
  readonly rest: string | null;
}

/** Parses `#/page/rest…`; an empty hash is the overview. */
export function parseHash(hash: string): Route {
  const path = hash.replace(/^#\/?/, '');
  const slash = path.indexOf('/');
  const page = (slash < 0 ? path : path.slice(0, slash)) || 'overview';
  const raw = slash < 0 ? '' : path.slice(slash + 1);
  let rest: string | null = null;
  if (raw) {
    try {
      rest = decodeURIComponent(raw);
    } catch {
      rest = raw;
    }
  }
  return { page, rest };
}

/** The current route, updated on `hashchange`. */
export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseHash(location.hash));
  useEffect(() => {
    const on = (): void => setRoute(parseHash(location.hash));
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

/** `#/page` or `#/page/<rest>` with `rest` encoded. */
export function href(page: string, rest?: string): string {
  return rest === undefined ? `#/${page}` : `#/${page}/${encodeURIComponent(rest)}`;
}
