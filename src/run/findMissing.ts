import type { DerivationSet } from '../drv/derivation.js';
import { MissingWalk, type MissingWork, type Substitute } from '../graph/queryMissing.js';

/** What the walk asks of the outside world; each answers a batch at a time. */
export interface MissingSources {
  /** The subset of `paths` valid in the local store. */
  localValid(paths: string[]): Promise<Iterable<string>>;
  /** Cache answers per path (null: no usable substitute); absent when substitution is off. */
  substitutes?(paths: string[]): Promise<ReadonlyMap<string, Substitute | null>>;
}

export interface MissingFacts {
  /** Paths known valid in the local store (outputs and input sources of the closure, at least). */
  localValid: ReadonlySet<string>;
  /** Paths whose validity was asked (the rest of the closure's outputs count as asked and invalid). */
  asked: ReadonlySet<string>;
  /** Output path → the builder that holds it. */
  held: ReadonlyMap<string, string>;
  /** Paths a cache or a builder failed to deliver this run: never fetched or copied from there again. */
  refused?: ReadonlySet<string>;
}

export interface FoundWork extends MissingWork {
  /** Every substitute the walk asked about, for fetch estimates and fallback. */
  substitutes: ReadonlyMap<string, Substitute | null>;
  /** Every path known valid locally, references included. */
  localValid: ReadonlySet<string>;
}

/**
 * Runs the queryMissing walk to its end: each round asks the local store,
 * then the caches, only about what the walk met and does not know yet, so
 * a cached root costs one question and a fully uncached DAG one per level.
 */
export async function findMissing(
  set: DerivationSet,
  facts: MissingFacts,
  sources: MissingSources,
  known: Map<string, Substitute | null> = new Map(),
): Promise<FoundWork> {
  const walk = new MissingWalk(set);
  const valid = new Set(facts.localValid);
  const asked = new Set(facts.asked);
  const substitute = sources.substitutes !== undefined;
  for (;;) {
    const work = walk.walk(
      {
        isValid: (p) => (valid.has(p) ? true : asked.has(p) ? false : undefined),
        substitute: (p) => (facts.refused?.has(p) ? null : known.get(p)),
        heldBy: (p) => (facts.refused?.has(p) ? undefined : facts.held.get(p)),
      },
      { substitute },
    );
    if (work.unknown.length === 0) return { ...work, substitutes: known, localValid: valid };
    const notAsked = work.unknown.filter((p) => !asked.has(p));
    if (notAsked.length > 0) {
      for (const p of await sources.localValid(notAsked)) valid.add(p);
      for (const p of notAsked) asked.add(p);
    }
    const toCaches = work.unknown.filter((p) => !valid.has(p) && !known.has(p));
    if (toCaches.length > 0) {
      const answers = sources.substitutes ? await sources.substitutes(toCaches) : new Map<string, null>();
      for (const p of toCaches) known.set(p, answers.get(p) ?? null);
    }
  }
}
