import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests start real servers; give them room, never sleep inside them.
    testTimeout: 120_000,
    hookTimeout: 180_000,
    pool: 'forks',
  },
});
