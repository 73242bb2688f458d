import { useRef, useState } from "preact/hooks";
import { accepted, ApiError, request, type UserError, UserErrors } from "../api/client";
import { put, UploadFailed } from "../api/upload";
import { Field } from "../components/Field";
import { Failure, Loading } from "../components/Status";
import { BASE_MODELS, keys, MODEL_TYPES, type BaseModelValue } from "../enums";
import { formats } from "../format";
import { graphql } from "../gql";
import type { ModelType, Visibility } from "../gql/graphql";
import { useLoad, useTitle } from "../hooks";
import { Link, navigate } from "../router";
import { useSession, viewerSeen } from "../session";

const UploadPage = graphql(`
  query UploadPage($modelId: ID!, $withModel: Boolean!) {
    ...ViewerHeader
    retentionPolicy {
      notice
      withheldHeaderKeys
    }
    model(id: $modelId) @include(if: $withModel) {
      id
      name
      owner {
        id
      }
    }
  }
`);

const CreateModel = graphql(`
  mutation CreateModel($input: CreateModelInput!) {
    createModel(input: $input) {
      model {
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

const CreateVersion = graphql(`
  mutation CreateVersion($input: CreateModelVersionInput!) {
    createModelVersion(input: $input) {
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

const StartFile = graphql(`
  mutation StartFile($input: StartModelFileUploadInput!) {
    startModelFileUpload(input: $input) {
      uploadUrl
      file {
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

const StartDataset = graphql(`
  mutation StartDataset($input: StartDatasetUploadInput!) {
    startDatasetUpload(input: $input) {
      uploadUrl
      dataset {
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

const PublishNew = graphql(`
  mutation PublishNew($input: PublishModelVersionInput!) {
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

/** What a submission has made so far (kept for a retry after a failure). */
interface Made {
  model?: string;
  version?: string;
  weights?: File;
  dataset?: File;
}

/** Run a mutation whose userErrors name fields differently from this form's. */
async function fieldsOf<R>(names: Record<string, string>, run: () => Promise<R>): Promise<R> {
  const result = await run();
  for (const payload of Object.values(result as Record<string, { userErrors?: UserError[] }>)) {
    for (const error of payload.userErrors ?? []) {
      if (error.field && names[error.field]) error.field = names[error.field];
    }
  }
  return result;
}

function words(text: string): string[] {
  return text
    .split(",")
    .map((w) => w.trim())
    .filter(Boolean);
}

interface Progress {
  sent: number;
  total: number;
}

function Bar({ id, label, progress }: { id: string; label: string; progress: Progress | null }) {
  if (!progress) return null;
  const percent = progress.total ? Math.round((progress.sent / progress.total) * 100) : 0;
  return (
    <div class="progress">
      <label for={id}>
        {label}: {percent}% ({formats.bytes(progress.sent)} of {formats.bytes(progress.total)})
      </label>
      <progress id={id} max={progress.total || 1} value={progress.sent} data-testid={id} />
    </div>
  );
}

export function Upload({ modelId }: { modelId: string | null }) {
  useTitle("Upload");
  const { token } = useSession();
  const page = useLoad(async () => {
    const data = await request(UploadPage, { modelId: modelId ?? "", withModel: modelId !== null });
    viewerSeen(data.viewer);
    return data;
  }, `${token}:${modelId}`);

  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [type, setType] = useState<ModelType>("LORA");
  const [tags, setTags] = useState("");
  const [nsfw, setNsfw] = useState(false);
  const [versionName, setVersionName] = useState("v1");
  const [baseModel, setBaseModel] = useState<BaseModelValue | "">("");
  const [trainedWords, setTrainedWords] = useState("");
  const [weights, setWeights] = useState<File | null>(null);
  const [dataset, setDataset] = useState<File | null>(null);
  const [visibility, setVisibility] = useState<Visibility>("PRIVATE");
  const [ownsRights, setOwnsRights] = useState(false);
  const [publishNow, setPublishNow] = useState(true);

  const [busy, setBusy] = useState(false);
  const [step, setStep] = useState<string | null>(null);
  const [errors, setErrors] = useState<UserErrors | null>(null);
  const [failure, setFailure] = useState<string | null>(null);
  const [draft, setDraft] = useState<string | null>(null);
  const progress = useRef<Made>(modelId ? { model: modelId } : {});
  const [weightsProgress, setWeightsProgress] = useState<Progress | null>(null);
  const [datasetProgress, setDatasetProgress] = useState<Progress | null>(null);

  if (!token) {
    return (
      <>
        <h1 tabIndex={-1}>Upload a model</h1>
        <p>
          <Link to="/signin?next=%2Fupload">Sign in</Link> to upload a model.
        </p>
      </>
    );
  }
  if (page.loading && !page.data) return <Loading what="the upload form" />;
  if (!page.data) return <Failure error={page.error ?? new ApiError("Nothing loaded.")} retry={page.reload} />;
  const policy = page.data.retentionPolicy;
  const existing = page.data.model ?? null;
  if (modelId && (!existing || existing.owner.id !== page.data.viewer?.id)) {
    return (
      <>
        <h1 tabIndex={-1}>Model not found</h1>
        <p>
          You can add versions to your own models only. <Link to="/upload">Upload a new model</Link>.
        </p>
      </>
    );
  }

  const about = (field: string) => errors?.about(field);

  const submit = async (event: Event) => {
    event.preventDefault();
    setErrors(null);
    setFailure(null);
    const missing: { field: string; message: string; code: string }[] = [];
    if (!existing && !name.trim()) missing.push({ field: "name", message: "Give the model a name.", code: "REQUIRED" });
    if (!versionName.trim()) missing.push({ field: "versionName", message: "Give the version a name, e.g. v1.", code: "REQUIRED" });
    if (!baseModel) missing.push({ field: "baseModel", message: "Choose the base model it was trained for.", code: "REQUIRED" });
    if (!weights) missing.push({ field: "weights", message: "Choose the weights file (.safetensors).", code: "REQUIRED" });
    if (dataset && visibility === "PUBLIC" && !ownsRights) {
      missing.push({ field: "ownsRights", message: "Confirm you hold the rights to share the dataset, or keep it private.", code: "RIGHTS_NOT_CONFIRMED" });
    }
    if (missing.length) {
      setErrors(new UserErrors(missing));
      document.getElementById(missing[0]!.field)?.focus();
      return;
    }
    setBusy(true);
    // After a failure, sending the form again goes on from where it stopped: the model
    // and version made are kept (the draft), files that arrived are not sent again.
    const made = progress.current;
    try {
      if (!made.model) {
        setStep("Creating the model…");
        const created = accepted(
          (await request(CreateModel, { input: { name: name.trim(), description, type, tags: words(tags), nsfw } })).createModel,
        );
        made.model = created.model!.id;
        setDraft(made.model);
      }
      const model = made.model;
      if (!made.version) {
        setStep("Creating the version…");
        made.version = accepted(
          (
            await fieldsOf({ name: "versionName" }, () =>
              request(CreateVersion, {
                input: { modelId: model, name: versionName.trim(), baseModel: baseModel as BaseModelValue, trainedWords: words(trainedWords) },
              }),
            )
          ).createModelVersion,
        ).version!.id;
      }
      const version = made.version;

      setStep("Uploading…");
      const uploads: Promise<void>[] = [];
      if (made.weights !== weights) {
        const file = accepted(
          (
            await fieldsOf({ filename: "weights", sizeBytes: "weights" }, () =>
              request(StartFile, { input: { versionId: version, filename: weights!.name, sizeBytes: weights!.size } }),
            )
          ).startModelFileUpload,
        );
        setWeightsProgress({ sent: 0, total: weights!.size });
        uploads.push(
          put(file.uploadUrl!, weights!, (sent, total) => setWeightsProgress({ sent, total })).then(() => {
            made.weights = weights!;
          }),
        );
      }
      if (dataset && made.dataset !== dataset) {
        const started = accepted(
          (
            await fieldsOf({ filename: "dataset", sizeBytes: "dataset" }, () =>
              request(StartDataset, {
                input: {
                  versionId: version,
                  filename: dataset.name,
                  sizeBytes: dataset.size,
                  visibility,
                  ownsRights: visibility === "PUBLIC" ? ownsRights : null,
                },
              }),
            )
          ).startDatasetUpload,
        );
        setDatasetProgress({ sent: 0, total: dataset.size });
        uploads.push(
          put(started.uploadUrl!, dataset, (sent, total) => setDatasetProgress({ sent, total })).then(() => {
            made.dataset = dataset;
          }),
        );
      }
      await Promise.all(uploads);

      if (publishNow) {
        setStep("Publishing…");
        accepted((await request(PublishNew, { input: { versionId: version } })).publishModelVersion);
      }
      progress.current = {};
      navigate(`/models/${encodeURIComponent(model)}`);
    } catch (error) {
      setStep(null);
      if (error instanceof UserErrors) {
        setErrors(error);
        if (error.errors.length) setFailure(error.message);
      } else if (error instanceof UploadFailed || error instanceof ApiError || error instanceof Error) {
        setFailure(error.message);
      } else {
        setFailure(String(error));
      }
      setBusy(false);
    }
  };

  const noticeId = "sharing-notice";
  return (
    <>
      <h1 tabIndex={-1}>{existing ? `Add a version to ${existing.name}` : "Upload a model"}</h1>
      <form class="upload" onSubmit={submit} noValidate>
        {!existing && (
          <fieldset>
            <legend>Model</legend>
            <Field id="name" label="Name" error={about("name")}>
              {(p) => <input {...p} type="text" required value={name} onInput={(e) => setName(e.currentTarget.value)} />}
            </Field>
            <Field id="description" label="Description" error={about("description")}>
              {(p) => <textarea {...p} rows={4} value={description} onInput={(e) => setDescription(e.currentTarget.value)} />}
            </Field>
            <div class="row">
              <Field id="type" label="Type">
                {(p) => (
                  <select {...p} value={type} onChange={(e) => setType(e.currentTarget.value as ModelType)}>
                    {keys(MODEL_TYPES).map((t) => (
                      <option value={t}>{MODEL_TYPES[t]}</option>
                    ))}
                  </select>
                )}
              </Field>
              <Field id="tags" label="Tags" hint="Comma-separated, at most 10." error={about("tags") ?? about("tag")}>
                {(p) => <input {...p} type="text" value={tags} onInput={(e) => setTags(e.currentTarget.value)} />}
              </Field>
            </div>
            <div class="check">
              <input id="nsfw" type="checkbox" checked={nsfw} onChange={(e) => setNsfw(e.currentTarget.checked)} />
              <label for="nsfw">Not safe for work (hidden from the catalogue unless asked for)</label>
            </div>
          </fieldset>
        )}
        <fieldset>
          <legend>Version</legend>
          <div class="row">
            <Field id="versionName" label="Version name" error={about("versionName")}>
              {(p) => <input {...p} type="text" required value={versionName} onInput={(e) => setVersionName(e.currentTarget.value)} />}
            </Field>
            <Field id="baseModel" label="Base model" error={about("baseModel")}>
              {(p) => (
                <select {...p} required value={baseModel} onChange={(e) => setBaseModel(e.currentTarget.value as BaseModelValue)}>
                  <option value="">Choose…</option>
                  {keys(BASE_MODELS).map((b) => (
                    <option value={b}>{BASE_MODELS[b]}</option>
                  ))}
                </select>
              )}
            </Field>
          </div>
          <Field id="trainedWords" label="Trigger words" hint="Comma-separated." error={about("trainedWords")}>
            {(p) => <input {...p} type="text" value={trainedWords} onInput={(e) => setTrainedWords(e.currentTarget.value)} />}
          </Field>
          <Field
            id="weights"
            label="Weights file"
            hint="A .safetensors file (pickled .ckpt or .pt files are refused: they can run code)."
            error={about("weights") ?? about("filename")}
          >
            {(p) => <input {...p} type="file" accept=".safetensors" required onChange={(e) => setWeights(e.currentTarget.files?.[0] ?? null)} />}
          </Field>
        </fieldset>
        <fieldset>
          <legend>Training dataset (optional)</legend>
          <Field id="dataset" label="Dataset archive" hint="A .zip of the images and captions it was trained on." error={about("sizeBytes")}>
            {(p) => <input {...p} type="file" accept=".zip,application/zip" onChange={(e) => setDataset(e.currentTarget.files?.[0] ?? null)} />}
          </Field>
          <fieldset class="sharing" aria-describedby={noticeId}>
            <legend>Who can see the dataset</legend>
            <div class="sharing-choice">
              <div class="choices">
                <div class="check">
                  <input
                    type="radio"
                    id="visibility-private"
                    name="visibility"
                    value="PRIVATE"
                    checked={visibility === "PRIVATE"}
                    onChange={() => setVisibility("PRIVATE")}
                  />
                  <label for="visibility-private">Private: only me</label>
                </div>
                <div class="check">
                  <input
                    type="radio"
                    id="visibility-public"
                    name="visibility"
                    value="PUBLIC"
                    checked={visibility === "PUBLIC"}
                    onChange={() => setVisibility("PUBLIC")}
                  />
                  <label for="visibility-public">Public: anyone, once published</label>
                </div>
              </div>
              <p class="policy" id={noticeId} data-testid="policy-notice">
                {policy.notice}
              </p>
            </div>
            {visibility === "PUBLIC" && (
              <div class={about("ownsRights") ? "check invalid" : "check"}>
                <input
                  id="ownsRights"
                  type="checkbox"
                  checked={ownsRights}
                  aria-describedby={about("ownsRights") ? "ownsRights-error" : undefined}
                  onChange={(e) => setOwnsRights(e.currentTarget.checked)}
                />
                <label for="ownsRights">I hold the rights to share this dataset with everyone.</label>
                {about("ownsRights") && (
                  <p class="error" id="ownsRights-error">
                    {about("ownsRights")}
                  </p>
                )}
              </div>
            )}
            {visibility === "PRIVATE" && policy.withheldHeaderKeys.length > 0 && (
              <p class="hint">
                Training details in the weights file's header ({policy.withheldHeaderKeys.slice(0, 3).join(", ")} and others) follow the
                same choice: hidden from everybody else, and erased when its window ends.
              </p>
            )}
          </fieldset>
        </fieldset>
        <div class="check">
          <input id="publishNow" type="checkbox" checked={publishNow} onChange={(e) => setPublishNow(e.currentTarget.checked)} />
          <label for="publishNow">Publish now (otherwise it stays a draft only you can see)</label>
        </div>
        <div class="uploading" aria-live="polite">
          {step && <p role="status">{step}</p>}
          <Bar id="weights-progress" label="Weights" progress={weightsProgress} />
          <Bar id="dataset-progress" label="Dataset" progress={datasetProgress} />
        </div>
        {failure && (
          <div class="error-box" role="alert">
            <p>{failure}</p>
            {draft && (
              <p>
                Your draft is saved: <Link to={`/models/${encodeURIComponent(draft)}`}>open it</Link>.
              </p>
            )}
          </div>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {publishNow ? "Upload and publish" : "Upload as a draft"}
        </button>
      </form>
    </>
  );
}
