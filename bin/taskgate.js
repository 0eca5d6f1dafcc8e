#!/usr/bin/env node
// taskgate CLI entry: runs the TypeScript sources through tsx (no build step).
// `npm run build` emits dist/ for deployments that prefer plain JS.
import { register } from 'tsx/esm/api';
register();
await import('../cli/main.ts');
