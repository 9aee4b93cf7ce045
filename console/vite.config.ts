// The console is built into dist/ with fixed file names (index.html,
// assets/console.js, assets/console.css): the control plane embeds exactly
// these, and a test rebuilds them from the sources and fails on drift.
import { defineConfig } from "vite";

export default defineConfig({
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "dist",
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
