import { useEffect, useState } from "preact/hooks";
import { accepted, request, UserErrors } from "../api/client";
import { onNotification, onReconnect } from "../api/live";
import { DatasetLabel } from "../components/DatasetLabel";
import { DeletionBanner } from "../components/DeletionBanner";
import { Download } from "../components/Download";
import { Failure, Loading } from "../components/Status";
import { Time } from "../components/Time";
import { BASE_MODELS, MODEL_TYPES } from "../enums";
import { formats } from "../format";
import { graphql } from "../gql";
import type { DatasetLabelFieldsFragment, ModelPageQuery } from "../gql/graphql";
import { useLoad, useNow, useTitle } from "../hooks";
import { bannerDue, nextChange } from "../label";
import { Link } from "../router";
import { viewerSeen } from "../session";

// The whole page in one request: the model, its versions, their files and datasets, the
// viewer (header) and the reminder offsets (banner).
const ModelPageQueryDocument = graphql(`
  query ModelPage($id: ID!) {
    ...ViewerHeader
    retentionPolicy {
      reminderOffsetsSeconds
    }
    model(id: $id) {
      id
      name
      description
      type
      tags
      nsfw
      createdAt
      downloadCount
      owner {
        id
        username
      }
      versions {
        id
        name
        status
        publishedAt
        createdAt
        baseModel
        trainedWords
        downloadCount
        files {
          id
          filename
          status
          primary
          sizeBytes
          sha256
          autoV2
          autoV3
          downloadUrl
          withheldKeys
          headerExpiresAt
          headerErasedAt
          headerMetadata {
            key
            value
          }
        }
        trainingDataset {
          ...DatasetLabelFields
          sha256
          uploadedAt
          downloadUrl
        }
      }
    }
  }
`);

const Publish = graphql(`
  mutation PublishVersion($input: PublishModelVersionInput!) {
    publishModelVersion(input: $input) {
      version {
        id
      }
      userErrors {
        field
        message
        code
      }
    }
  }
`);

type Model = NonNullable<ModelPageQuery["model"]>;
type Version = Model["versions"][number];
type File = Version["files"][number];

function Hash({ label, value }: { label: string; value: string | null | undefined }) {
  if (!value) return null;
  return (
    <>
      <dt>{label}</dt>
      <dd>
        <code class="hash">{value}</code>
      </dd>
    </>
  );
}

function WeightsFile({ file, mine }: { file: File; mine: boolean }) {
  return (
    <li class="file" data-testid="weights-file">
      <h4>
        {file.filename} {file.primary && <span class="chip">primary</span>}{" "}
        {file.status !== "AVAILABLE" && <span class="chip">{file.status === "DELETED" ? "deleted" : "upload not finished"}</span>}
      </h4>
      <dl class="facts">
        <dt>Size</dt>
        <dd title={`${formats.number(file.sizeBytes)} bytes`}>{formats.bytes(file.sizeBytes)}</dd>
        <Hash label="SHA-256" value={file.sha256} />
        <Hash label="AutoV2" value={file.autoV2} />
        <Hash label="AutoV3" value={file.autoV3} />
      </dl>
      {mine && file.withheldKeys && file.withheldKeys.length > 0 && (
        <p class="hint">
          Withheld from everybody else as training data: {file.withheldKeys.join(", ")}.{" "}
          {file.headerErasedAt ? (
            <>
              Erased from the stored file on <Time at={file.headerErasedAt} />.
            </>
          ) : file.headerExpiresAt ? (
            <>
              Erased from the stored file on <Time at={file.headerExpiresAt} />.
            </>
          ) : null}
        </p>
      )}
      {file.headerMetadata.length > 0 && (
        <details>
          <summary>Header metadata ({file.headerMetadata.length} entries)</summary>
          <dl class="metadata">
            {file.headerMetadata.map((entry) => (
              <>
                <dt>{entry.key}</dt>
                <dd>
                  <code>{entry.value}</code>
                </dd>
              </>
            ))}
          </dl>
        </details>
      )}
      <Download id={file.id} url={file.downloadUrl ?? null} label={`Download ${file.filename}`} />
    </li>
  );
}

function TrainingData({ dataset, now }: { dataset: Version["trainingDataset"]; now: number }) {
  if (!dataset) {
    // The same words whether there is none or it is somebody else's private one.
    return <p class="muted">No training dataset is available for this version.</p>;
  }
  const open = dataset.status === "AVAILABLE" && (!dataset.expiresAt || new Date(dataset.expiresAt).getTime() > now);
  return (
    <div class="dataset" data-testid="training-dataset">
      <h4>{dataset.filename}</h4>
      <DatasetLabel dataset={dataset} now={now} />
      {dataset.status !== "DELETED" && (
        <dl class="facts">
          <dt>Size</dt>
          <dd title={`${formats.number(dataset.sizeBytes)} bytes`}>{formats.bytes(dataset.sizeBytes)}</dd>
          <Hash label="SHA-256" value={dataset.sha256} />
        </dl>
      )}
      {open && <Download id={dataset.id} url={dataset.downloadUrl ?? null} label={`Download ${dataset.filename}`} />}
    </div>
  );
}

function VersionSection({
  version,
  mine,
  now,
  onPublished,
}: {
  version: Version;
  mine: boolean;
  now: number;
  onPublished: () => void;
}) {
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const publish = async () => {
    setBusy(true);
    setProblem(null);
    try {
      accepted((await request(Publish, { input: { versionId: version.id } })).publishModelVersion);
      onPublished();
    } catch (error) {
      setProblem(error instanceof UserErrors || error instanceof Error ? error.message : String(error));
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class="version" aria-labelledby={`version-${version.id}`}>
      <h2 id={`version-${version.id}`}>
        {version.name} {version.status === "DRAFT" && <span class="chip">draft</span>}
      </h2>
      <p class="meta">
        {BASE_MODELS[version.baseModel]} ·{" "}
        {version.publishedAt ? (
          <>
            published <Time at={version.publishedAt} />
          </>
        ) : (
          <>
            created <Time at={version.createdAt} />, not published
          </>
        )}{" "}
        · {formats.number(version.downloadCount)} downloads
      </p>
      {version.trainedWords.length > 0 && (
        <p>
          Trigger words:{" "}
          {version.trainedWords.map((w, i) => (
            <>
              {i > 0 && ", "}
              <code>{w}</code>
            </>
          ))}
        </p>
      )}
      {mine && version.status === "DRAFT" && (
        <div class="actions">
          <button type="button" class="primary" disabled={busy} onClick={publish}>
            Publish {version.name}
          </button>
          {problem && (
            <p class="error" role="alert">
              {problem}
            </p>
          )}
        </div>
      )}
      <h3>Weights</h3>
      {version.files.length ? (
        <ul class="files">
          {version.files.map((f) => (
            <WeightsFile key={f.id} file={f} mine={mine} />
          ))}
        </ul>
      ) : (
        <p class="muted">No weights file yet.</p>
      )}
      <h3>Training dataset</h3>
      <TrainingData dataset={version.trainingDataset} now={now} />
    </section>
  );
}

/** A dataset as a live notification carries it, merged into the page's copy. */
function patched(model: Model, dataset: DatasetLabelFieldsFragment): Model {
  return {
    ...model,
    versions: model.versions.map((v) =>
      v.trainingDataset?.id === dataset.id ? { ...v, trainingDataset: { ...v.trainingDataset, ...dataset } } : v,
    ),
  };
}

export function ModelPage({ id }: { id: string }) {
  const page = useLoad(async () => {
    const data = await request(ModelPageQueryDocument, { id });
    viewerSeen(data.viewer);
    return data;
  }, id);
  const [reminded, setReminded] = useState<Set<string>>(new Set());
  const model = page.data?.model ?? null;
  const offsets = page.data?.retentionPolicy.reminderOffsetsSeconds ?? [];
  const datasets = model?.versions.flatMap((v) => (v.trainingDataset ? [v.trainingDataset] : [])) ?? [];
  const now = useNow(datasets.map((d) => nextChange(d, Date.now(), offsets)));
  useTitle(model?.name ?? (page.loading ? "Model" : "Not found"));

  // Reminders and deletions arrive live: the label, the banner and the tombstone follow.
  useEffect(
    () =>
      onNotification((notification) => {
        const dataset = notification.dataset;
        if (!dataset) return;
        if (notification.kind === "DATASET_EXPIRING") setReminded((r) => new Set(r).add(dataset.id));
        page.update((data) => (data.model ? { ...data, model: patched(data.model, dataset) } : data));
      }),
    [],
  );
  useEffect(() => onReconnect(page.reload), []);

  if (page.loading && !page.data) return <Loading what="the model" />;
  if (page.error && !page.data) return <Failure error={page.error} retry={page.reload} />;
  if (!model) {
    return (
      <>
        <h1 tabIndex={-1}>Model not found</h1>
        <p>
          There is no such model, or it is not published. <Link to="/">Browse the models</Link>.
        </p>
      </>
    );
  }
  const mine = page.data?.viewer?.id === model.owner.id;
  const due = mine
    ? model.versions.flatMap((v) =>
        v.trainingDataset && bannerDue(v.trainingDataset, now, offsets, reminded.has(v.trainingDataset.id))
          ? [{ dataset: v.trainingDataset, where: `${model.name} ${v.name}` }]
          : [],
      )
    : [];
  return (
    <article>
      {due.map(({ dataset, where }) => (
        <DeletionBanner key={dataset.id} dataset={dataset} where={where} now={now} />
      ))}
      <h1 tabIndex={-1}>{model.name}</h1>
      <p class="meta">
        {MODEL_TYPES[model.type]} by {model.owner.username} · created <Time at={model.createdAt} /> ·{" "}
        {formats.number(model.downloadCount)} downloads{model.nsfw && " · NSFW"}
      </p>
      {model.tags.length > 0 && (
        <ul class="tags" aria-label="Tags">
          {model.tags.map((tag) => (
            <li>
              <Link to={`/?tag=${encodeURIComponent(tag)}`} class="tag">
                #{tag}
              </Link>
            </li>
          ))}
        </ul>
      )}
      {model.description && <p class="description">{model.description}</p>}
      {mine && (
        <p>
          <Link to={`/upload?model=${encodeURIComponent(model.id)}`}>Add a version</Link>
        </p>
      )}
      {model.versions.map((version) => (
        <VersionSection key={version.id} version={version} mine={mine} now={now} onPublished={page.reload} />
      ))}
      {model.versions.length === 0 && <p class="muted">No versions yet.</p>}
    </article>
  );
}
