// Calling lorashelf with the generated operations and plain fetch (Node 20+ or a browser).
//
//   npm run build && npm run example -- http://127.0.0.1:8000/graphql
//
// Each document from src/gql carries its result and variable types, so `gql(...)`
// below is typed end to end. Signed in, every request carries
// `Authorization: Bearer <token>` (the token from signUp or logIn).
import { CreateModelDocument, CreateModelVersionDocument, RetentionPolicyDocument, SignUpDocument } from "./gql/graphql.js";
import type { TypedDocumentString } from "./gql/graphql.js";

const api = process.argv[2] ?? "http://127.0.0.1:8000/graphql";

async function gql<Result, Variables>(
  document: TypedDocumentString<Result, Variables>,
  variables: Variables,
  headers: Record<string, string> = {},
): Promise<Result> {
  const response = await fetch(api, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body: JSON.stringify({ query: document.toString(), variables }),
  });
  if (response.status === 401) throw new Error("the session ended: sign in again");
  const { data, errors } = (await response.json()) as { data?: Result; errors?: { message: string }[] };
  if (errors?.length || !data) throw new Error(errors?.[0]?.message ?? `HTTP ${response.status}`);
  return data;
}

const policy = await gql(RetentionPolicyDocument, {});
console.log(policy.retentionPolicy.notice);

const username = `example-${Math.random().toString(36).slice(2, 10)}`;
const { signUp } = await gql(SignUpDocument, { input: { username, password: "correct horse battery" } });
if (signUp.userErrors.length || !signUp.token) throw new Error(signUp.userErrors[0]?.message);
const auth = { Authorization: `Bearer ${signUp.token}` };

// An Idempotency-Key makes a mutation safe to retry: the same key and the same request
// within 24 hours get the first answer, and nothing is done twice.
const { createModel } = await gql(
  CreateModelDocument,
  { input: { name: "Cats", description: "A cat LoRA" } },
  { ...auth, "Idempotency-Key": crypto.randomUUID() },
);
if (!createModel.model) throw new Error(createModel.userErrors[0]?.message);
const { createModelVersion } = await gql(
  CreateModelVersionDocument,
  { input: { modelId: createModel.model.id, name: "v1", baseModel: "SDXL_1_0" } },
  auth,
);
if (!createModelVersion.version) throw new Error(createModelVersion.userErrors[0]?.message);
console.log(`${username}: model "${createModel.model.name}", version ${createModelVersion.version.name} (${createModelVersion.version.baseModel})`);
