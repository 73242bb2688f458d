// The typed client: graphql-codegen's client preset reads the committed schema (no
// server needed) and every `graphql(...)` document in src/, and writes src/gql/
// (not committed: `npm run build` regenerates it, so a schema change the app does not
// follow fails the type check of the build).
//
// documentMode "string": documents are plain strings with their types attached
// (TypedDocumentString), so no GraphQL library is shipped to the browser.
import type { CodegenConfig } from "@graphql-codegen/cli";

const config: CodegenConfig = {
  schema: "../schema.graphql",
  documents: ["src/**/*.{ts,tsx}", "!src/gql/**"],
  ignoreNoDocuments: false,
  generates: {
    "src/gql/": {
      preset: "client",
      presetConfig: { fragmentMasking: false },
      config: {
        documentMode: "string",
        // DateTime: ISO 8601 with its UTC offset; BigInt: a JSON number (at most 2^53 - 1).
        scalars: { DateTime: "string", BigInt: "number" },
        enumsAsTypes: true,
        useTypeImports: true,
        skipTypename: true,
      },
    },
  },
  silent: true,
};

export default config;
