// What a person is told about a training dataset: the label beside it, and whether
// the banner before its deletion is due. Pure functions of the dataset and the clock.
import type { DatasetLabelFieldsFragment, DeletionReason } from "./gql/graphql";

/** A piece of label text: words, or an instant shown as a local date or as "in N days". */
export type Part = string | { at: string; as: "date" | "relative" };

export type Tone = "private" | "public" | "deleted" | "pending";

export interface Label {
  tone: Tone;
  parts: Part[];
}

const REASONS: Record<DeletionReason, string> = {
  EXPIRED: "expired",
  OWNER_REQUEST: "deleted by its owner",
  MODEL_DELETED: "its model or version was deleted",
  TAKEN_DOWN: "its model version was taken down",
};

type Dataset = Pick<
  DatasetLabelFieldsFragment,
  "visibility" | "status" | "expiresAt" | "deletedAt" | "deletionReason"
>;

export function datasetLabel(dataset: Dataset, now: number): Label {
  if (dataset.status === "DELETED") {
    const reason = dataset.deletionReason ? ` (${REASONS[dataset.deletionReason]})` : "";
    if (dataset.deletedAt) {
      return { tone: "deleted", parts: ["Deleted on ", { at: dataset.deletedAt, as: "date" }, `${reason}.`] };
    }
    return { tone: "deleted", parts: [`Being deleted${reason}: nobody can download it any more.`] };
  }
  if (dataset.visibility === "PUBLIC") {
    const waiting = dataset.status === "PENDING_UPLOAD" ? " (upload not finished)" : "";
    return { tone: "public", parts: [`Public: anyone can see and download it${waiting}.`] };
  }
  if (dataset.status === "PENDING_UPLOAD") {
    return { tone: "pending", parts: ["Private: only you can see this. Its upload has not finished."] };
  }
  if (!dataset.expiresAt) {
    return { tone: "private", parts: ["Private: only you can see this."] };
  }
  if (new Date(dataset.expiresAt).getTime() <= now) {
    return {
      tone: "deleted",
      parts: ["Private: its window ended on ", { at: dataset.expiresAt, as: "date" }, "; it is being deleted."],
    };
  }
  return {
    tone: "private",
    parts: [
      "Private: only you can see this. Deleted automatically on ",
      { at: dataset.expiresAt, as: "date" },
      ", ",
      { at: dataset.expiresAt, as: "relative" },
      ".",
    ],
  };
}

/**
 * Whether the banner before deletion shows: a private dataset still there, within its
 * last reminder window (the smallest reminder offset before expiresAt), or one the
 * server has just sent that reminder about (its clock decides, not this browser's).
 */
export function bannerDue(dataset: Dataset, now: number, reminderOffsetsSeconds: readonly number[], reminded = false): boolean {
  if (dataset.visibility !== "PRIVATE" || dataset.status !== "AVAILABLE" || !dataset.expiresAt) return false;
  const expires = new Date(dataset.expiresAt).getTime();
  if (expires <= now) return false;
  if (reminded) return true;
  if (reminderOffsetsSeconds.length === 0) return false;
  const last = Math.min(...reminderOffsetsSeconds);
  return now >= expires - last * 1000;
}

/** The next instant at which the label or the banner changes by itself (or null). */
export function nextChange(dataset: Dataset, now: number, reminderOffsetsSeconds: readonly number[]): number | null {
  if (dataset.status === "DELETED" || !dataset.expiresAt) return null;
  const expires = new Date(dataset.expiresAt).getTime();
  const candidates = [expires, ...reminderOffsetsSeconds.map((offset) => expires - offset * 1000)];
  const future = candidates.filter((t) => t > now);
  return future.length ? Math.min(...future) : null;
}

/** The label as plain text (for titles and tests), with the given formats. */
export function labelText(label: Label, format: { dateTime(iso: string): string; relative(iso: string, now: number): string }, now: number): string {
  return label.parts
    .map((part) => (typeof part === "string" ? part : part.as === "date" ? format.dateTime(part.at) : format.relative(part.at, now)))
    .join("");
}
