import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCluster, type BuilderSpec, type TestCluster } from '../../scripts/cluster/testCluster.js';

export { startCluster, TestCluster } from '../../scripts/cluster/testCluster.js';
export type { BuilderSpec, ClusterBuilder, CommandResult } from '../../scripts/cluster/testCluster.js';
export { defaultBuilders, builderSpecs, hostSystem } from '../../scripts/cluster/builderSpec.js';
export { pidsInNamespace } from '../../scripts/cluster/namespaceProcesses.js';

/**
 * A cluster in a fresh folder under the system temp dir. `dispose()` stops it
 * and removes the folder (stores included); call it from afterAll.
 */
export async function startTempCluster(
  label: string,
  builders?: BuilderSpec[],
): Promise<TestCluster & { dispose(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `offload-${label}-`));
  let cluster: TestCluster;
  try {
    cluster = await startCluster({ dir, builders });
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return Object.assign(cluster, {
    async dispose() {
      await cluster.stop();
      await rm(dir, { recursive: true, force: true });
    },
  });
}
