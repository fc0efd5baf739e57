import { Substituters, DEFAULT_CACHE_CONNECT_TIMEOUT_S } from '../remote/binaryCache/substituters.js';
import { DEFAULT_COPY_BYTES_PER_SECOND, DEFAULT_FETCH_BYTES_PER_SECOND, type TransferEstimates } from '../schedule/transferJobs.js';
import type { SubstitutionSettings } from './substitutionSettings.js';

/**
 * The run's caches, or undefined when substitution is off or none is
 * configured. Nix's connect-timeout applies when it is set and shorter than
 * offload's own short default (an unreachable cache must cost seconds).
 */
export function openSubstituters(settings: SubstitutionSettings, storeDir: string, warn: (message: string) => void): Substituters | undefined {
  if (!settings.substitute || settings.substituters.length === 0) return undefined;
  const timeout = settings.connectTimeout > 0 ? Math.min(settings.connectTimeout, DEFAULT_CACHE_CONNECT_TIMEOUT_S) : DEFAULT_CACHE_CONNECT_TIMEOUT_S;
  return new Substituters({
    urls: settings.substituters,
    trustedPublicKeys: settings.trustedPublicKeys,
    requireSigs: settings.requireSigs,
    storeDir,
    connectTimeoutMs: timeout * 1000,
    warn,
  });
}

/** Transfer rates for the plan: learned per cache and builder, else the defaults. */
export function transferEstimates(rate: ((source: string) => number | undefined) | undefined, heldBytes?: (path: string) => number | undefined): TransferEstimates {
  return {
    fetchRate: (cache) => rate?.(cache) ?? DEFAULT_FETCH_BYTES_PER_SECOND,
    copyRate: (host) => rate?.(host) ?? DEFAULT_COPY_BYTES_PER_SECOND,
    ...(heldBytes ? { heldBytes } : {}),
  };
}
