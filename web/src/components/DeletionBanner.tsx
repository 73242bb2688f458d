import type { DatasetLabelFieldsFragment } from "../gql/graphql";
import { Download } from "./Download";
import { Time } from "./Time";

/** Before a private dataset is deleted: when, and the way to keep a copy. */
export function DeletionBanner({
  dataset,
  where,
  now,
}: {
  dataset: DatasetLabelFieldsFragment & { downloadUrl?: string | null };
  where: string;
  now: number;
}) {
  if (!dataset.expiresAt) return null;
  return (
    <div class="banner" role="alert" data-testid="deletion-banner">
      <p>
        <strong>
          Your private dataset {dataset.filename} ({where}) will be deleted{" "}
          <Time at={dataset.expiresAt} as="relative" now={now} />.
        </strong>{" "}
        Download it before <Time at={dataset.expiresAt} />: after that it is gone for good.
      </p>
      <Download id={dataset.id} url={dataset.downloadUrl ?? null} label={`Download ${dataset.filename}`} />
    </div>
  );
}
