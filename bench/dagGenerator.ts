import type { Job } from '../src/schedule/types.js';

/** Deterministic 32-bit PRNG (mulberry32): the same seed gives the same DAG everywhere. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface GeneratedDagOptions {
  jobs: number;
  layers?: number;
  seed?: number;
  /** Upper bound of deps per job, drawn from the previous few layers. */
  maxDeps?: number;
}

/**
 * A layered random DAG shaped like a nixpkgs closure: a few percent builtin
 * downloads in layer 0, mostly short builds, now and then a long one, and
 * deps on recent layers (so the depth is real).
 */
export function generateLayeredDag(opts: GeneratedDagOptions): Job[] {
  const rand = mulberry32(opts.seed ?? 42);
  const n = opts.jobs;
  const layers = opts.layers ?? 60;
  const maxDeps = opts.maxDeps ?? 6;
  const perLayer = Math.ceil(n / layers);
  const jobs: Job[] = [];
  for (let i = 0; i < n; i++) {
    const layer = Math.floor(i / perLayer);
    const builtin = layer === 0 && rand() < 0.5;
    const r = rand();
    const duration = builtin ? 5 : r < 0.01 ? 1200 + rand() * 2400 : r < 0.2 ? 1 + rand() * 10 : 30 + rand() * 150;
    const deps = new Set<string>();
    if (layer > 0) {
      const k = 1 + Math.floor(rand() * maxDeps);
      for (let d = 0; d < k; d++) {
        const back = 1 + Math.floor(rand() * Math.min(3, layer));
        const from = (layer - back) * perLayer;
        deps.add(`/gen/${from + Math.floor(rand() * perLayer)}`);
      }
    }
    jobs.push({
      id: `/gen/${i}`,
      name: `gen-${i}`,
      system: builtin ? 'builtin' : 'x86_64-linux',
      requiredFeatures: !builtin && duration > 1200 && rand() < 0.5 ? ['big-parallel'] : [],
      duration,
      estimateSource: 'rules',
      deps: [...deps],
      preferLocalBuild: builtin,
      isBuiltin: builtin,
    });
  }
  return jobs;
}
