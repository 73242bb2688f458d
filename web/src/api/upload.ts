// Bytes straight from the browser to the signed upload URL: an HTTP PUT of the File,
// with progress (XMLHttpRequest: fetch cannot report upload progress).
import { apiUrl } from "./client";

export class UploadFailed extends Error {
  constructor(
    message: string,
    readonly code: string | null,
  ) {
    super(message);
  }
}

export function put(url: string, file: Blob, progress: (sent: number, total: number) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", apiUrl(url));
    xhr.upload.onprogress = (event) => progress(event.loaded, event.lengthComputable ? event.total : file.size);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        progress(file.size, file.size);
        resolve();
        return;
      }
      // Every refusal of the upload route is JSON {"error": CODE, "message": ...}.
      let code: string | null = null;
      let message = `The upload was refused (HTTP ${xhr.status}).`;
      try {
        const body = JSON.parse(xhr.responseText) as { error?: string; message?: string };
        code = body.error ?? null;
        if (body.message) message = body.message;
      } catch {
        // not JSON: keep the status
      }
      reject(new UploadFailed(message, code));
    };
    xhr.onerror = () => reject(new UploadFailed("The upload was cut off; check your connection and try again.", "NETWORK"));
    xhr.send(file);
  });
}
