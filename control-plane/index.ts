/** The control plane: server entry, service, storage and the sidecar-side clients. */
export { startControlPlane, type ControlPlane, type ControlPlaneOptions, type ServiceToken } from './server.ts';
export { ControlPlaneService, type Caller } from './service.ts';
export { openDatabase, type Database, type StorageConfig } from './storage/db.ts';
export { connectControlPlane, type ConnectOptions, type ControlPlaneClient } from './client/connect.ts';
export { ControlPlaneReviews } from './client/reviews.ts';
export { ControlPlaneTasks } from './client/tasks.ts';
