// A small client-side router on the History API, under the app's base path (/app/ by
// default; `lorashelf serve` answers index.html for every path below it).
import type { JSX } from "preact";
import { useEffect, useState } from "preact/hooks";

const BASE = import.meta.env.BASE_URL.replace(/\/+$/, "");

export interface Route {
  path: string;
  params: URLSearchParams;
  /** Counts visits (links, back and forward), not in-place URL updates (replace). */
  visit: number;
}

/** The URL of an app path ("/models/abc"). */
export function href(path: string): string {
  return BASE + path;
}

let visits = 0;

function current(): Route {
  const { pathname, search } = location;
  const path = pathname.startsWith(BASE) ? pathname.slice(BASE.length) || "/" : "/";
  return { path, params: new URLSearchParams(search), visit: visits };
}

const listeners = new Set<() => void>();
window.addEventListener("popstate", () => {
  visits += 1;
  listeners.forEach((l) => l());
});

export function navigate(path: string, { replace = false } = {}): void {
  const url = href(path);
  if (url === location.pathname + location.search) return;
  if (replace) {
    history.replaceState(null, "", url);
  } else {
    history.pushState(null, "", url);
    visits += 1;
    window.scrollTo(0, 0);
  }
  listeners.forEach((l) => l());
}

export function useRoute(): Route {
  const [route, setRoute] = useState(current);
  useEffect(() => {
    const update = () => setRoute(current());
    listeners.add(update);
    return () => listeners.delete(update);
  }, []);
  return route;
}

type LinkProps = Omit<JSX.HTMLAttributes<HTMLAnchorElement>, "href"> & { to: string };

/** An ordinary link (it opens in a new tab, copies, etc.) that navigates in place. */
export function Link({ to, onClick, ...props }: LinkProps) {
  return (
    <a
      {...props}
      href={href(to)}
      onClick={(event) => {
        if (typeof onClick === "function") onClick(event);
        if (event.defaultPrevented || event.button !== 0) return;
        if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
        event.preventDefault();
        navigate(to);
      }}
    />
  );
}
