import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import type { EstimationInput } from '../src/schedule/durations.js';

/** One entry of `nix show-derivation -r` JSON, as far as the bench needs it. */
interface ShowDerivationEntry {
  outputs: Record<string, { path?: string; hash?: string }>;
  inputDrvs?: Record<string, string[]>;
  system: string;
  builder: string;
  env?: Record<string, string>;
}

export interface DagNode {
  drv: EstimationInput;
  deps: string[];
}

/** `/nix/store/<hash>-<name>.drv` → `<name>`. */
export function drvName(drvPath: string): string {
  const base = drvPath.slice(drvPath.lastIndexOf('/') + 1).replace(/\.drv$/, '');
  const dash = base.indexOf('-');
  return dash >= 0 ? base.slice(dash + 1) : base;
}

/** Reads a `nix show-derivation -r` .json.gz file (fixtures/dags) into the scheduler's estimation inputs and edges. */
export function loadDagFile(path: string): DagNode[] {
  const data = JSON.parse(gunzipSync(readFileSync(path)).toString('utf8')) as Record<string, ShowDerivationEntry>;
  return Object.entries(data).map(([drvPath, d]) => {
    const outputs = Object.values(d.outputs);
    const env = d.env ?? {};
    return {
      drv: {
        drvPath,
        name: drvName(drvPath),
        system: d.system,
        isFixedOutput: outputs.length > 0 && outputs.every((o) => Boolean(o.hash)),
        preferLocalBuild: env['preferLocalBuild'] === '1',
        requiredSystemFeatures: (env['requiredSystemFeatures'] ?? '').split(/\s+/).filter(Boolean),
        isBuiltin: d.system === 'builtin' || d.builder.startsWith('builtin:'),
      },
      deps: Object.keys(d.inputDrvs ?? {}).filter((p) => p in data),
    };
  });
}
