import { loadEnv } from "vite";
import { defineConfig } from "vitest/config";

// Built into dist/ and served by `lorashelf serve` at /app/ (same origin as the API).
// To host it elsewhere: VITE_LORASHELF_API_URL=https://api.example.com npm run build
// (and LORASHELF_CORS_ORIGINS on the server; see README, "Web app"), with `--base=/` if
// it is served from the root of its own origin.
//
// `npm run dev` serves it on :5173 and forwards the API's paths (WebSocket included) to
// a running lorashelf, LORASHELF_API (default http://127.0.0.1:8000): same origin, so
// no CORS needed while developing.
export default defineConfig(({ mode }) => {
  const api = loadEnv(mode, ".", "LORASHELF_").LORASHELF_API ?? "http://127.0.0.1:8000";
  return {
    base: "/app/",
    esbuild: { jsx: "automatic", jsxImportSource: "preact" },
    build: {
      outDir: "dist",
      emptyOutDir: true,
      target: "es2022",
      // Nothing inline: the page's CSP allows files from its own origin only.
      assetsInlineLimit: 0,
      modulePreload: { polyfill: false },
      reportCompressedSize: false,
    },
    server: {
      proxy: {
        "/graphql": { target: api, ws: true },
        "/uploads": api,
        "/downloads": api,
      },
    },
    test: { environment: "node", include: ["src/**/*.test.ts"] },
  };
});
