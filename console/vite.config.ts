// The console is built into the server crate (crates/tidewright-server/
// console, which it embeds; there the crate as published carries it) with
// fixed file names (index.html, assets/console.js, assets/console.css), and
// a test rebuilds them from the sources and fails on drift.
import { defineConfig } from "vite";

export default defineConfig({
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "../crates/tidewright-server/console",
    emptyOutDir: true,
    sourcemap: false,
    cssCodeSplit: false,
    modulePreload: false,
    rollupOptions: {
      output: {
        entryFileNames: "assets/console.js",
        assetFileNames: "assets/console[extname]",
        inlineDynamicImports: true,
      },
    },
  },
});
