// Build and dev-server settings of the web UI. The dev server proxies the
// chat server's /api and /socket.io paths so the UI always talks to its own
// origin, exactly as it does when the gateway serves the built files.
import { defineConfig } from 'vitest/config';

const target = process.env.VITE_API_URL || 'http://localhost:3001';

export default defineConfig({
  server: {
    port: 5173,
    proxy: {
      '/api': { target, changeOrigin: true },
      '/socket.io': { target, changeOrigin: true, ws: true },
    },
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    target: 'es2020',
  },
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
  },
});
