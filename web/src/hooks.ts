import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { ApiError } from "./api/client";

/** The clock, re-read at the next instant something shown changes (or every 30 s). */
export function useNow(changes: readonly (number | null)[] = []): number {
  const [now, setNow] = useState(Date.now);
  const key = changes.join(",");
  useEffect(() => {
    const upcoming = changes.filter((t): t is number => t !== null && t > now);
    const next = Math.min(now + 30_000, ...upcoming);
    const timer = setTimeout(() => setNow(Date.now()), Math.max(50, next - Date.now() + 20));
    return () => clearTimeout(timer);
  }, [now, key]);
  return now;
}

export interface Loaded<T> {
  data: T | null;
  error: ApiError | null;
  loading: boolean;
  reload: () => void;
  update: (change: (data: T) => T) => void;
}

/** Load a page's data once per key (one request), with reload and local updates. */
export function useLoad<T>(load: () => Promise<T>, key: string): Loaded<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [loading, setLoading] = useState(true);
  const [generation, setGeneration] = useState(0);
  const latest = useRef(0);
  useEffect(() => {
    const ticket = ++latest.current;
    setLoading(true);
    setError(null);
    load().then(
      (value) => {
        if (ticket !== latest.current) return;
        setData(value);
        setLoading(false);
      },
      (reason: unknown) => {
        if (ticket !== latest.current) return;
        setError(reason instanceof ApiError ? reason : new ApiError(String(reason)));
        setLoading(false);
      },
    );
  }, [key, generation]);
  const reload = useCallback(() => setGeneration((n) => n + 1), []);
  const update = useCallback((change: (data: T) => T) => setData((d) => (d === null ? d : change(d))), []);
  return { data, error, loading, reload, update };
}

/** Set the document's title for a page. */
export function useTitle(title: string): void {
  useEffect(() => {
    document.title = title ? `${title} · lorashelf` : "lorashelf";
  }, [title]);
}
