import { createHash } from 'node:crypto';
import { z } from 'zod';
import { BadInputError } from '../errors/offloadError.js';

/**
 * The facts about a derivation the duration model looks at. A Derivation
 * from src/drv satisfies it structurally; the scheduler needs nothing else.
 */
export interface EstimationInput {
  drvPath: string;
  /** Derivation name without the hash and without `.drv`. */
  name: string;
  system: string;
  isFixedOutput: boolean;
  preferLocalBuild: boolean;
  requiredSystemFeatures: string[];
  isBuiltin: boolean;
}

export interface NameRule {
  match: RegExp;
  seconds: number;
}

/** Seconds on a speedFactor-1 host, in the shape of fixtures/dags/durations.json. */
export interface DurationRules {
  /** `rules` when read from --durations FILE, `default` for the built-in prior. */
  source: 'rules' | 'default';
  /** Where the rules came from, for messages. */
  origin: string;
  jitter: number;
  byName: NameRule[];
  byClass: { fod: number; trivial: number; bigParallel: number; normal: number };
}

export type DurationSource = 'history' | 'rules' | 'default';
export interface Estimate {
  seconds: number;
  source: DurationSource;
}

/** Past duration (reference seconds) of a derivation with this name and system, if known. */
export type HistoryLookup = (name: string, system: string) => number | undefined;

export class DurationRulesError extends BadInputError {}

const rulesSchema = z.object({
  jitter: z.number().min(0).max(1).default(0),
  byName: z
    .array(z.object({ match: z.string(), seconds: z.number().nonnegative() }))
    .default([]),
  byClass: z.object({
    fod: z.object({ seconds: z.number().nonnegative() }),
    trivial: z.object({ seconds: z.number().nonnegative() }),
    'big-parallel': z.object({ seconds: z.number().nonnegative() }),
    normal: z.object({ seconds: z.number().nonnegative() }),
  }),
});

/** Validates the durations.json format; `origin` names the file in errors. */
export function parseDurationRules(
  data: unknown,
  origin: string,
  source: DurationRules['source'] = 'rules',
): DurationRules {
  const parsed = rulesSchema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue ? issue.path.join('.') || '(top level)' : '(top level)';
    throw new DurationRulesError(
      `duration rules ${origin}: field ${where}: ${issue?.message ?? 'invalid'}`,
    );
  }
  const byName = parsed.data.byName.map((rule, i) => {
    try {
      return { match: new RegExp(rule.match), seconds: rule.seconds };
    } catch (cause) {
      throw new DurationRulesError(
        `duration rules ${origin}: byName.${i}.match ${JSON.stringify(rule.match)} is not a valid regular expression`,
        { cause },
      );
    }
  });
  const c = parsed.data.byClass;
  return {
    source,
    origin,
    jitter: parsed.data.jitter,
    byName,
    byClass: {
      fod: c.fod.seconds,
      trivial: c.trivial.seconds,
      bigParallel: c['big-parallel'].seconds,
      normal: c.normal.seconds,
    },
  };
}

/**
 * The built-in prior: the figures of fixtures/dags/durations.json
 * (rough Hydra-like seconds on an 8-core reference builder), since nothing
 * better is known before our own history exists. Estimates from it report
 * `default`. Without that file's jitter: it makes simulated DAGs varied, but
 * in a plan the user reads it turned "normal derivation, 90 s" into a
 * made-up 1m06s or 1m54s.
 */
export const defaultDurationRules: DurationRules = parseDurationRules(
  {
    jitter: 0,
    byName: [
      { match: '^chromium-unwrapped-', seconds: 21600 },
      { match: '^firefox-unwrapped-', seconds: 5400 },
      { match: '^rustc-[0-9]', seconds: 3600 },
      { match: '^llvm-[0-9]', seconds: 2700 },
      { match: '^clang-[0-9]', seconds: 2400 },
      { match: '^linux-[0-9]', seconds: 2400 },
      { match: '^qemu-', seconds: 1500 },
      { match: '^gcc-[0-9]', seconds: 1800 },
      { match: '^xgcc-', seconds: 1500 },
      { match: '^glibc-[0-9]', seconds: 600 },
      { match: '^systemd-[0-9]', seconds: 900 },
      { match: '^python3-[0-9]', seconds: 600 },
      { match: '^perl-[0-9]', seconds: 300 },
      { match: '^cmake-[0-9]', seconds: 480 },
      { match: '^binutils-[0-9]', seconds: 240 },
      { match: '^openssl-[0-9]', seconds: 300 },
      { match: '^nodejs-[0-9]', seconds: 1800 },
      { match: '^boost-[0-9]', seconds: 1200 },
      { match: '^gtk\\+?[34]?-[0-9]', seconds: 600 },
      { match: '^mesa-[0-9]', seconds: 900 },
      { match: '^ffmpeg-', seconds: 600 },
      { match: '^icu4c-', seconds: 300 },
      { match: '^coreutils-[0-9]', seconds: 240 },
      { match: '^git-[0-9]', seconds: 300 },
    ],
    byClass: {
      fod: { seconds: 5 },
      trivial: { seconds: 1 },
      'big-parallel': { seconds: 1800 },
      normal: { seconds: 90 },
    },
  },
  'built-in defaults',
  'default',
);

/**
 * Deterministic factor in [1 - jitter, 1 + jitter]: the first 8 hex digits of
 * sha256(drvPath) read as an unsigned 32-bit number u, then
 * 1 - jitter + 2·jitter·u / 0xffffffff. Every tool using durations.json must
 * compute the same numbers, so this formula is the contract.
 */
export function jitterFactor(drvPath: string, jitter: number): number {
  if (jitter === 0) return 1;
  const u = parseInt(createHash('sha256').update(drvPath).digest('hex').slice(0, 8), 16);
  return 1 - jitter + (2 * jitter * u) / 0xffffffff;
}

/**
 * Seconds from the rules alone. Fixed-output derivations always take
 * byClass.fod (no jitter: "always" in the model's text); for the others the
 * first matching byName rule wins, else big-parallel, trivial
 * (preferLocalBuild) or normal, then the jitter factor applies.
 */
export function ruleSeconds(drv: EstimationInput, rules: DurationRules): number {
  if (drv.isFixedOutput) return rules.byClass.fod;
  const base =
    rules.byName.find((r) => r.match.test(drv.name))?.seconds ??
    (drv.requiredSystemFeatures.includes('big-parallel')
      ? rules.byClass.bigParallel
      : drv.preferLocalBuild
        ? rules.byClass.trivial
        : rules.byClass.normal);
  return base * jitterFactor(drv.drvPath, rules.jitter);
}

export function estimate(drv: EstimationInput, rules: DurationRules, history?: HistoryLookup): Estimate {
  const past = history?.(drv.name, drv.system);
  if (past !== undefined && Number.isFinite(past) && past >= 0) return { seconds: past, source: 'history' };
  return { seconds: ruleSeconds(drv, rules), source: rules.source };
}
