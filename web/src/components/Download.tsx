import { useState } from "preact/hooks";
import { apiUrl, request } from "../api/client";
import { graphql } from "../gql";

const FreshDownload = graphql(`
  query FreshDownload($id: ID!) {
    node(id: $id) {
      ... on ModelFile {
        downloadUrl
      }
      ... on TrainingDataset {
        downloadUrl
      }
    }
  }
`);

// Download links are signed and good for minutes: one older than this is asked for
// again when clicked.
const FRESH_MS = 4 * 60 * 1000;

/** A download link (an ordinary link: it can be copied or opened in a tab). */
export function Download({ id, url, label }: { id: string; url: string | null; label: string }) {
  const [loadedAt] = useState(Date.now);
  const [problem, setProblem] = useState<string | null>(null);
  if (!url) return null;
  return (
    <span class="download">
      <a
        class="button"
        href={apiUrl(url)}
        download
        onClick={async (event) => {
          if (Date.now() - loadedAt < FRESH_MS) return;
          event.preventDefault();
          try {
            const fresh = (await request(FreshDownload, { id })).node;
            const next = fresh && "downloadUrl" in fresh ? fresh.downloadUrl : null;
            if (next) location.assign(apiUrl(next));
            else setProblem("This can no longer be downloaded.");
          } catch (error) {
            setProblem(error instanceof Error ? error.message : String(error));
          }
        }}
      >
        {label}
      </a>
      {problem && (
        <span class="error" role="alert">
          {problem}
        </span>
      )}
    </span>
  );
}
