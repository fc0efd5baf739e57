import { BadInputError } from '../errors/offloadError.js';

/**
 * Where offload keeps what several runs share (build slots and history):
 * SQLite files in the user's cache on this machine (the default), or one
 * PostgreSQL database for a fleet of runners on many machines.
 */
export type StateLocation = { kind: 'local' } | { kind: 'postgres'; url: string; display: string; via: string };

export class StateUrlError extends BadInputError {}

export interface StateSources {
  /** `--state URL`. */
  flag?: string;
  env?: NodeJS.ProcessEnv;
  /** The `state` key of offload's JSON config (machines) file, and that file's path. */
  config?: { state: string; file: string };
}

/** --state wins over $OFFLOAD_STATE, which wins over the config file's `state`; none of them: local SQLite. */
export function stateLocation(sources: StateSources): StateLocation {
  const env = sources.env ?? process.env;
  if (sources.flag !== undefined) return parseStateUrl(sources.flag, '--state');
  if (env.OFFLOAD_STATE) return parseStateUrl(env.OFFLOAD_STATE, '$OFFLOAD_STATE');
  if (sources.config) return parseStateUrl(sources.config.state, `"state" in ${sources.config.file}`);
  return { kind: 'local' };
}

export function parseStateUrl(text: string, via: string): StateLocation {
  const trimmed = text.trim();
  if (!/^postgres(ql)?:\/\//i.test(trimmed)) {
    throw new StateUrlError(`${via}: expected a postgres://user@host:port/database URL, got "${redactConnectionString(trimmed).slice(0, 80)}"`);
  }
  let url: URL;
  try {
    url = new URL(trimmed);
  } catch {
    throw new StateUrlError(`${via}: "${redactConnectionString(trimmed).slice(0, 80)}" is not a valid URL`);
  }
  const sslmode = url.searchParams.get('sslmode');
  if (sslmode !== null && !SSL_MODES.includes(sslmode)) {
    throw new StateUrlError(`${via}: sslmode must be one of ${SSL_MODES.join(', ')}, got "${sslmode}"`);
  }
  return { kind: 'postgres', url: trimmed, display: redactConnectionString(trimmed), via };
}

const SSL_MODES = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full', 'no-verify'];

/**
 * The URL as it may be shown: no password, neither in the authority nor as a
 * `password=` parameter. Everything offload prints about the state goes
 * through this.
 */
export function redactConnectionString(text: string): string {
  let out = text.replace(/^([a-z]+:\/\/[^@/?#]*?):[^@/?#]*@/i, '$1@');
  out = out.replace(/([?&]password=)[^&#]*/gi, '$1***');
  return out;
}

/** Removes a secret from text that came from elsewhere (a driver's error message, say). */
export function scrubSecret(text: string, secret: string | undefined): string {
  if (!secret) return text;
  return text.split(secret).join('***');
}

/** The password of a state URL, if it has one (to scrub it from messages). */
export function urlPassword(url: string): string | undefined {
  try {
    const parsed = new URL(url);
    const fromQuery = parsed.searchParams.get('password');
    const password = parsed.password !== '' ? decodeURIComponent(parsed.password) : fromQuery;
    return password === null || password === '' ? undefined : password;
  } catch {
    return undefined;
  }
}
