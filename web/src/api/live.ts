// Live updates: one graphql-ws connection (graphql-transport-ws on /graphql) while
// signed in, the token in connection_init, `notificationAdded` streamed to whoever
// listens (the bell, the pages that show datasets).
import { createClient, type Client } from "graphql-ws";
import { graphql } from "../gql";
import type { NotificationFieldsFragment } from "../gql/graphql";
import { session, signedOut, subscribe, unreadChanged } from "../session";
import { GRAPHQL_URL, SESSION_ENDED } from "./client";

const NotificationAdded = graphql(`
  subscription NotificationAdded {
    notificationAdded {
      ...NotificationFields
    }
  }
`);

type Listener = (notification: NotificationFieldsFragment) => void;
const listeners = new Set<Listener>();
const reconnectListeners = new Set<() => void>();

/** Call `listener` with every notification that arrives; returns the unsubscribe. */
export function onNotification(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** Call `listener` after the connection came back (what was missed is worth a re-read). */
export function onReconnect(listener: () => void): () => void {
  reconnectListeners.add(listener);
  return () => reconnectListeners.delete(listener);
}

function socketUrl(): string {
  const url = new URL(GRAPHQL_URL, location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

let client: Client | null = null;
let connectedToken: string | null = null;

function connect(token: string | null): void {
  if (token === connectedToken) return;
  client?.dispose();
  client = null;
  connectedToken = token;
  if (!token) return;
  const live = createClient({
    url: socketUrl(),
    connectionParams: { Authorization: `Bearer ${token}` },
    lazy: false,
    // Keep trying for as long as the tab is open, at most 30 s apart.
    retryAttempts: Number.MAX_SAFE_INTEGER,
    shouldRetry: () => true,
    retryWait: (retries) => new Promise((resolve) => setTimeout(resolve, Math.min(30_000, 1000 * 2 ** retries) + Math.random() * 1000)),
    on: {
      connected: (_socket, _payload, wasRetry) => {
        if (wasRetry) for (const listener of reconnectListeners) listener();
      },
    },
  });
  client = live;
  live.subscribe<{ notificationAdded: NotificationFieldsFragment }>(
    { query: NotificationAdded.toString() },
    {
      next: (result) => {
        const notification = result.data?.notificationAdded;
        if (!notification) return;
        unreadChanged(session().unread + 1);
        for (const listener of listeners) listener(notification);
      },
      error: (error) => {
        // The stream ends with UNAUTHENTICATED when the token is signed out or expires.
        const errors = Array.isArray(error) ? error : [];
        if (errors.some((e: { extensions?: { code?: string } }) => e.extensions?.code === "UNAUTHENTICATED")) {
          if (client === live) signedOut(SESSION_ENDED);
        }
      },
      complete: () => {},
    },
  );
}

/** Keep the connection in step with the session (called once at start). */
export function startLive(): void {
  connect(session().token);
  subscribe(() => connect(session().token));
}
