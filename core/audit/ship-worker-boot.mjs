// Worker entry when taskgate runs from its TypeScript sources: registers tsx
// in the worker thread (loaders are per thread), then loads ship-worker.ts.
import { register } from 'tsx/esm/api';

register();
await import('./ship-worker.ts');
