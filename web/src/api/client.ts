// GraphQL over HTTP: one POST per operation, typed by the generated documents.
import type { TypedDocumentString } from "../gql/graphql";
import { session, signedOut } from "../session";

/** The API's origin: empty when the app is served by lorashelf itself (/app/), or the
 * URL given at build time (VITE_LORASHELF_API_URL) to host the app elsewhere. */
export const API_URL: string = (import.meta.env.VITE_LORASHELF_API_URL ?? "").replace(/\/+$/, "");
export const GRAPHQL_URL = `${API_URL}/graphql`;

/** An absolute URL for one the API gave (upload and download links may be relative). */
export function apiUrl(url: string): string {
  return new URL(url, new URL(GRAPHQL_URL, location.href)).href;
}

export const SESSION_ENDED = "Your session ended (signed out elsewhere, or expired): sign in again.";

/** A GraphQL error, or a transport failure, with the server's stable code if any. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

/** The expected failures of a mutation (its userErrors). */
export interface UserError {
  field?: string | null;
  message: string;
  code: string;
}

export class UserErrors extends Error {
  constructor(readonly errors: UserError[]) {
    super(errors.map((e) => e.message).join(" "));
  }
  /** The first message about one input field, for the field's own error text. */
  about(field: string): string | undefined {
    return this.errors.find((e) => e.field === field)?.message;
  }
}

/** A mutation payload's changed object, or its userErrors thrown. */
export function accepted<P extends { userErrors: UserError[] }>(payload: P): P {
  if (payload.userErrors.length > 0) throw new UserErrors(payload.userErrors);
  return payload;
}

type Args<V> = Record<string, never> extends V ? [variables?: V] : [variables: V];

export async function request<R, V>(document: TypedDocumentString<R, V>, ...[variables]: Args<V>): Promise<R> {
  const token = session().token;
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  let response: Response;
  try {
    response = await fetch(GRAPHQL_URL, {
      method: "POST",
      headers,
      body: JSON.stringify({ query: document.toString(), variables: variables ?? {} }),
    });
  } catch {
    throw new ApiError("The server cannot be reached; check your connection and try again.", "NETWORK");
  }
  if (response.status === 401 && token) {
    // The token no longer works: forget it and ask for a sign-in (the app listens).
    signedOut(SESSION_ENDED);
    throw new ApiError(SESSION_ENDED, "UNAUTHENTICATED");
  }
  let body: { data?: R; errors?: { message: string; extensions?: { code?: string } }[] };
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`The server answered ${response.status} without a GraphQL result.`, "HTTP_" + response.status);
  }
  const error = body.errors?.[0];
  if (error) throw new ApiError(error.message, error.extensions?.code ?? null);
  if (!response.ok || body.data === undefined) {
    throw new ApiError(`The server answered ${response.status}.`, "HTTP_" + response.status);
  }
  return body.data;
}
