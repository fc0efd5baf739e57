import { jsonDepthProblem } from '../config/jsonSyntax.js';
import { drvNameFromPath } from '../storePath/storePath.js';
import type { Derivation, DerivationFields } from './derivation.js';

export type { DerivationFields } from './derivation.js';

/** Reports a problem in the source; each reader turns it into its own error type. */
export type Fail = (problem: string) => never;

/**
 * Adds the facts the scheduler needs, read the way Nix reads them
 * (ParsedDerivation): from `__json` when the derivation uses structured
 * attrs, otherwise from plain env strings.
 */
export function completeDerivation(fields: DerivationFields, fail: Fail): Derivation {
  const json = fields.env['__json'];
  const structuredAttrs = json === undefined ? undefined : parseStructuredAttrs(json, fail);
  const attrs = structuredAttrs === undefined ? envAttrs(fields.env) : jsonAttrs(structuredAttrs, fail);
  const outputs = Object.values(fields.outputs);
  const features = new Set(attrs.requiredSystemFeatures);
  // Nix requires this feature of any builder that gets a floating or deferred CA derivation.
  if (outputs.some((o) => o.path === '')) features.add('ca-derivations');
  const drv: Derivation = {
    drvPath: fields.drvPath,
    name: drvNameFromPath(fields.drvPath),
    outputs: fields.outputs,
    inputDrvs: fields.inputDrvs,
    inputSrcs: fields.inputSrcs,
    system: fields.system,
    builder: fields.builder,
    args: fields.args,
    env: fields.env,
    requiredSystemFeatures: [...features].sort(),
    preferLocalBuild: attrs.preferLocalBuild,
    allowSubstitutes: attrs.allowSubstitutes,
    isFixedOutput: outputs.length > 0 && outputs.every((o) => o.hash !== ''),
    isBuiltin: fields.system === 'builtin' || fields.builder.startsWith('builtin:'),
  };
  if (structuredAttrs !== undefined) drv.structuredAttrs = structuredAttrs;
  return drv;
}

interface SchedulingAttrs {
  requiredSystemFeatures: string[];
  preferLocalBuild: boolean;
  allowSubstitutes: boolean;
}

function envAttrs(env: Record<string, string>): SchedulingAttrs {
  const features = env['requiredSystemFeatures'];
  const preferLocal = env['preferLocalBuild'];
  const allowSubst = env['allowSubstitutes'];
  return {
    requiredSystemFeatures: features === undefined ? [] : features.split(/[ \t\n\r]+/).filter((f) => f !== ''),
    preferLocalBuild: preferLocal === '1',
    allowSubstitutes: allowSubst === undefined ? true : allowSubst === '1',
  };
}

function parseStructuredAttrs(json: string, fail: Fail): Record<string, unknown> {
  const tooDeep = jsonDepthProblem(json);
  if (tooDeep) fail(`the structured attrs in env.__json are ${tooDeep.reason}`);
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (e) {
    fail(`the structured attrs in env.__json are not valid JSON (${(e as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    fail('the structured attrs in env.__json are not a JSON object');
  }
  return value as Record<string, unknown>;
}

function jsonAttrs(attrs: Record<string, unknown>, fail: Fail): SchedulingAttrs {
  const features = attrs['requiredSystemFeatures'];
  if (features !== undefined && !(Array.isArray(features) && features.every((f) => typeof f === 'string'))) {
    fail('structured attr requiredSystemFeatures must be a list of strings');
  }
  return {
    requiredSystemFeatures: features ?? [],
    preferLocalBuild: jsonBool(attrs, 'preferLocalBuild', false, fail),
    allowSubstitutes: jsonBool(attrs, 'allowSubstitutes', true, fail),
  };
}

function jsonBool(attrs: Record<string, unknown>, key: string, fallback: boolean, fail: Fail): boolean {
  const value = attrs[key];
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') fail(`structured attr ${key} must be a Boolean`);
  return value;
}
