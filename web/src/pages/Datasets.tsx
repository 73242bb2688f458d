import { useEffect, useState } from "preact/hooks";
import { request } from "../api/client";
import { onNotification, onReconnect } from "../api/live";
import { DatasetLabel } from "../components/DatasetLabel";
import { DeletionBanner } from "../components/DeletionBanner";
import { Download } from "../components/Download";
import { Failure, Loading } from "../components/Status";
import { Time } from "../components/Time";
import { formats } from "../format";
import { graphql } from "../gql";
import type { DatasetEventKind, DatasetsPageQuery } from "../gql/graphql";
import { useLoad, useNow, useTitle } from "../hooks";
import { bannerDue, nextChange } from "../label";
import { Link } from "../router";
import { useSession, viewerSeen } from "../session";

// The owner's datasets, tombstones included, with their history: one request a page.
const DatasetsPage = graphql(`
  query DatasetsPage($after: String) {
    ...ViewerHeader
    retentionPolicy {
      reminderOffsetsSeconds
    }
    viewer {
      id
      trainingDatasets(first: 20, after: $after) {
        edges {
          node {
            ...DatasetLabelFields
            createdAt
            uploadedAt
            downloadUrl
            events {
              kind
              at
              detail
            }
            version {
              id
              name
              status
              model {
                id
                name
              }
            }
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

type Dataset = NonNullable<DatasetsPageQuery["viewer"]>["trainingDatasets"]["edges"][number]["node"];

const EVENTS: Record<DatasetEventKind, string> = {
  UPLOAD_STARTED: "Upload started",
  UPLOADED: "Uploaded and checked",
  PUBLISHED: "Version published: the window started",
  MADE_PRIVATE: "Made private",
  MADE_PUBLIC: "Made public",
  DOWNLOADED: "Downloaded",
  REMINDED: "Reminder sent",
  DELETED: "Bytes deleted",
  HEADER_ERASED: "Training keys erased from the weights header",
};

function where(d: Dataset): string {
  return d.version ? `${d.version.model.name} ${d.version.name}` : "a deleted model";
}

function Card({ dataset, now }: { dataset: Dataset; now: number }) {
  const open = dataset.status === "AVAILABLE" && (!dataset.expiresAt || new Date(dataset.expiresAt).getTime() > now);
  return (
    <li class={dataset.status === "DELETED" ? "card tombstone" : "card"} data-testid="dataset-card">
      <h2 class="card-title">{dataset.filename}</h2>
      <p class="meta">
        {dataset.version ? (
          <Link to={`/models/${encodeURIComponent(dataset.version.model.id)}`}>
            {dataset.version.model.name} {dataset.version.name}
          </Link>
        ) : (
          "Its model was deleted"
        )}{" "}
        · {formats.bytes(dataset.sizeBytes)} · recorded <Time at={dataset.createdAt} />
      </p>
      <DatasetLabel dataset={dataset} now={now} />
      {open && <Download id={dataset.id} url={dataset.downloadUrl ?? null} label={`Download ${dataset.filename}`} />}
      {dataset.events && dataset.events.length > 0 && (
        <details>
          <summary>History ({dataset.events.length} events)</summary>
          <ol class="history">
            {dataset.events.map((e) => (
              <li>
                <Time at={e.at} />: {EVENTS[e.kind]}
                {e.detail && <span class="muted"> ({e.detail})</span>}
              </li>
            ))}
          </ol>
        </details>
      )}
    </li>
  );
}

export function Datasets() {
  useTitle("My datasets");
  const { token } = useSession();
  const [items, setItems] = useState<Dataset[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [more, setMore] = useState(false);
  const [reminded, setReminded] = useState<Set<string>>(new Set());
  const page = useLoad(async () => {
    const data = await request(DatasetsPage, { after: null });
    viewerSeen(data.viewer);
    const list = data.viewer?.trainingDatasets;
    setItems(list?.edges.map((e) => e.node) ?? []);
    setCursor(list?.pageInfo.endCursor ?? null);
    setMore(list?.pageInfo.hasNextPage ?? false);
    return data;
  }, String(token));
  const offsets = page.data?.retentionPolicy.reminderOffsetsSeconds ?? [];
  const now = useNow(items.map((d) => nextChange(d, Date.now(), offsets)));

  useEffect(
    () =>
      onNotification((n) => {
        const changed = n.dataset;
        if (!changed) return;
        if (n.kind === "DATASET_EXPIRING") setReminded((r) => new Set(r).add(changed.id));
        // A deletion adds a history entry too: re-read the page (one request).
        if (n.kind === "DATASET_DELETED") page.reload();
        else setItems((shown) => shown.map((d) => (d.id === changed.id ? { ...d, ...changed, version: d.version } : d)));
      }),
    [],
  );
  useEffect(() => onReconnect(page.reload), []);

  if (!token) {
    return (
      <>
        <h1 tabIndex={-1}>My datasets</h1>
        <p>
          <Link to="/signin?next=%2Fdatasets">Sign in</Link> to see your datasets.
        </p>
      </>
    );
  }
  const loadMore = async () => {
    const data = await request(DatasetsPage, { after: cursor });
    const list = data.viewer?.trainingDatasets;
    setItems((shown) => [...shown, ...(list?.edges.map((e) => e.node) ?? [])]);
    setCursor(list?.pageInfo.endCursor ?? null);
    setMore(list?.pageInfo.hasNextPage ?? false);
  };
  const due = items.filter((d) => bannerDue(d, now, offsets, reminded.has(d.id)));
  return (
    <>
      {due.map((d) => (
        <DeletionBanner key={d.id} dataset={d} where={where(d)} now={now} />
      ))}
      <h1 tabIndex={-1}>My datasets</h1>
      <p class="muted">
        Every training dataset you uploaded, newest first: who can see it, when a private one is deleted, and what happened to it.
        Deleted ones stay here as a record.
      </p>
      {page.loading && !page.data && <Loading what="your datasets" />}
      {page.error && <Failure error={page.error} retry={page.reload} />}
      {page.data && items.length === 0 && <p class="muted">No datasets yet.</p>}
      <ul class="cards">
        {items.map((d) => (
          <Card key={d.id} dataset={d} now={now} />
        ))}
      </ul>
      {more && (
        <button type="button" onClick={loadMore}>
          Show older datasets
        </button>
      )}
    </>
  );
}
