import { defineConfig } from "vitest/config";

// Served by `lorashelf serve` at /app/ (same origin as the API). To host it elsewhere,
// build with VITE_LORASHELF_API_URL=https://api.example.com (see README, "Web app").
export default defineConfig({
  base: "/app/",
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    // The whole app is one small chunk; nothing inline (the page's CSP allows 'self' only).
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
  },
  test: { environment: "node", include: ["src/**/*.test.ts"] },
});
