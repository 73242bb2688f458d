// Who is signed in: the bearer token in memory, kept in sessionStorage (this tab only,
// gone when the tab closes), and what the pages last learnt about the viewer.
import { useEffect, useState } from "preact/hooks";

const KEY = "lorashelf.token";

export interface Session {
  token: string | null;
  userId: string | null;
  username: string | null;
  unread: number;
  // Why the last session ended, shown once on the sign-in page.
  ended: string | null;
}

function stored(): string | null {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null; // storage switched off: the token lives in memory only
  }
}

let state: Session = { token: stored(), userId: null, username: null, unread: 0, ended: null };
const listeners = new Set<() => void>();

function set(next: Partial<Session>): void {
  state = { ...state, ...next };
  for (const listener of listeners) listener();
}

export function session(): Session {
  return state;
}

export function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function useSession(): Session {
  const [, rerender] = useState(0);
  useEffect(() => subscribe(() => rerender((n) => n + 1)), []);
  return state;
}

export function signedIn(token: string, user: { id: string; username: string }): void {
  try {
    sessionStorage.setItem(KEY, token);
  } catch {
    // memory only
  }
  set({ token, userId: user.id, username: user.username, unread: 0, ended: null });
}

/** Forget the token: signed out by the user, or refused by the server (401). */
export function signedOut(reason: string | null = null): void {
  try {
    sessionStorage.removeItem(KEY);
  } catch {
    // memory only
  }
  set({ token: null, userId: null, username: null, unread: 0, ended: reason });
}

/** What a page query said about the viewer (every page asks, in the same request). */
export function viewerSeen(viewer: { id: string; username: string; unreadNotificationCount?: number | null } | null | undefined): void {
  if (!viewer) return;
  set({
    userId: viewer.id,
    username: viewer.username,
    unread: viewer.unreadNotificationCount ?? state.unread,
  });
}

export function unreadChanged(unread: number): void {
  set({ unread: Math.max(0, unread) });
}

export function endedShown(): void {
  if (state.ended) state = { ...state, ended: null };
}
