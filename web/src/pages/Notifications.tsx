import { useEffect, useState } from "preact/hooks";
import { request } from "../api/client";
import { onNotification, onReconnect } from "../api/live";
import { Failure, Loading } from "../components/Status";
import { Time } from "../components/Time";
import { graphql } from "../gql";
import type { NotificationFieldsFragment, NotificationKind } from "../gql/graphql";
import { useLoad, useTitle } from "../hooks";
import { Link } from "../router";
import { unreadChanged, useSession, viewerSeen } from "../session";

const NotificationsPage = graphql(`
  query NotificationsPage($after: String) {
    ...ViewerHeader
    viewer {
      id
      notifications(first: 30, after: $after) {
        edges {
          node {
            ...NotificationFields
          }
        }
        pageInfo {
          hasNextPage
          endCursor
        }
      }
    }
  }
`);

const MarkRead = graphql(`
  mutation MarkRead($input: MarkNotificationsReadInput!) {
    markNotificationsRead(input: $input) {
      notifications {
        id
        readAt
      }
      userErrors {
        code
        message
      }
    }
  }
`);

const KIND: Record<NotificationKind, string> = {
  DATASET_EXPIRING: "Reminder",
  DATASET_DELETED: "Deleted",
  CONTENT_TAKEN_DOWN: "Taken down",
  CONTENT_RESTORED: "Restored",
  ACCOUNT_SUSPENDED: "Suspended",
  ACCOUNT_REINSTATED: "Reinstated",
  EXPORT_READY: "Export ready",
};

export function Notifications() {
  useTitle("Notifications");
  const { token } = useSession();
  const [items, setItems] = useState<NotificationFieldsFragment[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [more, setMore] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);
  const page = useLoad(async () => {
    const data = await request(NotificationsPage, { after: null });
    viewerSeen(data.viewer);
    const list = data.viewer?.notifications;
    setItems(list?.edges.map((e) => e.node) ?? []);
    setCursor(list?.pageInfo.endCursor ?? null);
    setMore(list?.pageInfo.hasNextPage ?? false);
    return data;
  }, String(token));
  useEffect(() => onNotification((n) => setItems((shown) => [n, ...shown.filter((s) => s.id !== n.id)])), []);
  useEffect(() => onReconnect(page.reload), []);

  if (!token) {
    return (
      <>
        <h1 tabIndex={-1}>Notifications</h1>
        <p>
          <Link to="/signin?next=%2Fnotifications">Sign in</Link> to see your notifications.
        </p>
      </>
    );
  }
  const unread = items.filter((n) => !n.readAt);
  const markRead = async (ids: string[]) => {
    setProblem(null);
    try {
      const payload = (await request(MarkRead, { input: { ids } })).markNotificationsRead;
      const read = new Map(payload.notifications.map((n) => [n.id, n.readAt]));
      setItems((shown) => shown.map((n) => (read.has(n.id) ? { ...n, readAt: read.get(n.id) ?? n.readAt } : n)));
      const still = items.filter((n) => !n.readAt && !read.has(n.id)).length;
      unreadChanged(still);
    } catch (error) {
      setProblem(error instanceof Error ? error.message : String(error));
    }
  };
  const loadMore = async () => {
    try {
      const data = await request(NotificationsPage, { after: cursor });
      const list = data.viewer?.notifications;
      setItems((shown) => [...shown, ...(list?.edges.map((e) => e.node) ?? [])]);
      setCursor(list?.pageInfo.endCursor ?? null);
      setMore(list?.pageInfo.hasNextPage ?? false);
    } catch (error) {
      setProblem(error instanceof Error ? error.message : String(error));
    }
  };

  return (
    <>
      <h1 tabIndex={-1}>Notifications</h1>
      {page.loading && !page.data && <Loading what="your notifications" />}
      {page.error && <Failure error={page.error} retry={page.reload} />}
      {unread.length > 0 && (
        <p>
          <button type="button" onClick={() => markRead(unread.map((n) => n.id))}>
            Mark all as read
          </button>
        </p>
      )}
      {problem && (
        <p class="error" role="alert">
          {problem}
        </p>
      )}
      {page.data && items.length === 0 && <p class="muted">Nothing yet. Reminders before a private dataset is deleted, and the notice after it, come here.</p>}
      <ul class="notifications" data-testid="notifications">
        {items.map((n) => {
          const model = n.dataset?.version?.model;
          return (
            <li class={n.readAt ? "notification" : "notification unread"}>
              <p>
                <span class={`chip chip-${n.kind === "DATASET_DELETED" ? "deleted" : "private"}`}>{KIND[n.kind]}</span>{" "}
                {!n.readAt && <span class="sr-only">Unread: </span>}
                {n.message}
              </p>
              <p class="meta">
                <Time at={n.createdAt} />
                {model && (
                  <>
                    {" "}
                    · <Link to={`/models/${encodeURIComponent(model.id)}`}>{model.name}</Link>
                  </>
                )}
                {!n.readAt && (
                  <>
                    {" "}
                    ·{" "}
                    <button type="button" class="link-button" onClick={() => markRead([n.id])}>
                      Mark as read
                    </button>
                  </>
                )}
              </p>
            </li>
          );
        })}
      </ul>
      {more && (
        <button type="button" onClick={loadMore}>
          Show older notifications
        </button>
      )}
    </>
  );
}
