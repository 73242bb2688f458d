import type { DatasetLabelFieldsFragment } from "../gql/graphql";
import { datasetLabel } from "../label";
import { Time } from "./Time";

const BADGES = { private: "Private", public: "Public", deleted: "Deleted", pending: "Pending" } as const;

/** The label beside a dataset: who can see it and when it will be (or was) deleted. */
export function DatasetLabel({ dataset, now }: { dataset: DatasetLabelFieldsFragment; now: number }) {
  const label = datasetLabel(dataset, now);
  return (
    <p class={`label label-${label.tone}`} data-testid="dataset-label">
      <span class="badge" aria-hidden="true">
        {BADGES[label.tone]}
      </span>{" "}
      <span class="label-text">
        {label.parts.map((part) => (typeof part === "string" ? part : <Time at={part.at} as={part.as} now={now} />))}
      </span>
    </p>
  );
}
