import { join } from 'node:path';
import { ensureFreshBundle } from '../../scripts/freshBundle.js';

/** Integration tests run `node bin/offload.js`: its bundle must be built from the sources under test. */
export default async function setup(): Promise<void> {
  await ensureFreshBundle(join(import.meta.dirname, '..', '..'));
}
