import type { Machine } from '../config/machine.js';
import type { BuilderNixConfig } from './nixConfigProbe.js';

/**
 * What `offload machines check` found about one builder. `unusable` makes
 * the host unusable (exit code hostsUnusable), `warning` means some builds
 * sent there would fail or the host is short of something, `note` is
 * information that needs no action.
 */
export type Severity = 'unusable' | 'warning' | 'note';

export interface Finding {
  severity: Severity;
  message: string;
}

export type MachineClaims = Pick<Machine, 'systems' | 'supportedFeatures' | 'mandatoryFeatures'>;

const list = (items: readonly string[]) => (items.length > 0 ? items.join(', ') : 'none');

/** The systems a Nix builds for itself: its own plus extra-platforms (as Nix's canBuildLocally decides). */
export function buildableSystems(actual: BuilderNixConfig): string[] {
  return [...new Set([actual.system, ...actual.extraPlatforms])];
}

/**
 * Compares what the machines file claims with what the builder's Nix really
 * accepts. A claim it does not back makes jobs sent there fail with "a 'X'
 * with features {…} is required to build …", so each one is named.
 */
export function compareClaims(claims: MachineClaims, actual: BuilderNixConfig): Finding[] {
  return [...systemFindings(claims.systems, actual), ...featureFindings(claims, actual)];
}

function systemFindings(claimed: readonly string[], actual: BuilderNixConfig): Finding[] {
  const buildable = buildableSystems(actual);
  const missing = claimed.filter((s) => !buildable.includes(s));
  const whatItIs = `the builder is ${actual.system} with extra-platforms ${list(actual.extraPlatforms)}`;
  const findings: Finding[] = [];
  if (claimed.length > 0 && missing.length === claimed.length) {
    findings.push({
      severity: 'unusable',
      message: `claims ${list(claimed)} but ${whatItIs}: it can build none of the claimed systems`,
    });
  } else {
    for (const system of missing) {
      findings.push({ severity: 'warning', message: `claims ${system} but ${whatItIs}, so builds for ${system} would fail there` });
    }
  }
  const viaExtra = claimed.filter((s) => s !== actual.system && actual.extraPlatforms.includes(s));
  if (viaExtra.length > 0) findings.push({ severity: 'note', message: `builds ${list(viaExtra)} through extra-platforms` });
  if (!claimed.includes(actual.system)) {
    findings.push({ severity: 'note', message: `its own system ${actual.system} is not claimed in the machines file` });
  }
  return findings;
}

function featureFindings(claims: MachineClaims, actual: BuilderNixConfig): Finding[] {
  const findings: Finding[] = [];
  const claimed = [...new Set([...claims.supportedFeatures, ...claims.mandatoryFeatures])];
  for (const feature of claimed) {
    if (actual.systemFeatures.includes(feature)) continue;
    const mandatory = claims.mandatoryFeatures.includes(feature) ? ' (mandatory)' : '';
    findings.push({
      severity: 'warning',
      message: `claims ${feature}${mandatory} but its system-features (${list(actual.systemFeatures)}) lack it, so builds requiring ${feature} would fail there`,
    });
  }
  const unclaimed = actual.systemFeatures.filter((f) => !claimed.includes(f));
  if (unclaimed.length > 0) {
    findings.push({ severity: 'note', message: `offers ${list(unclaimed)}, not claimed in the machines file` });
  }
  return findings;
}
