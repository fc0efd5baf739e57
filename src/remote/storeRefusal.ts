/**
 * Errors a Nix store gives up with that trying again cannot change: the
 * same path sent again lacks the same signature, a full disk stays full
 * for the next attempt, a user outside trusted-users stays outside. Read
 * from the server's last `error:` line (ServeConnectionLostError.serverError).
 * Anything not listed here stays a lost connection, which is retried.
 */
export type RefusalKind = 'signature' | 'noSpace' | 'readOnly' | 'contentMismatch' | 'notTrusted' | 'notAllowed' | 'permission';

const REFUSALS: ReadonlyArray<readonly [RegExp, RefusalKind]> = [
  [/because it lacks a valid signature/, 'signature'],
  [/No space left on device|Disk quota exceeded/, 'noSpace'],
  [/Read-only file system/, 'readOnly'],
  [/(hash|size) mismatch importing path/, 'contentMismatch'],
  [/you are not privileged to /, 'notTrusted'],
  [/(importing|building) paths is not allowed/, 'notAllowed'],
  [/Permission denied/, 'permission'],
];

export interface StoreRefusal {
  kind: RefusalKind;
  /** The store's own words. */
  reason: string;
  /** What would make the next attempt work, or undefined when the reason says it. */
  fix?: string;
}

/** The refusal in a server's last error line, or undefined when it may be transient. */
export function storeRefusal(serverError: string | undefined): StoreRefusal | undefined {
  if (serverError === undefined) return undefined;
  const kind = REFUSALS.find(([pattern]) => pattern.test(serverError))?.[1];
  if (kind === undefined) return undefined;
  const fix = FIXES[kind];
  return { kind, reason: serverError, ...(fix !== undefined && { fix }) };
}

/** The two ways to let a user's store take what builders built, named wherever a signature is missing. */
export const SIGNATURE_FIXES =
  "add the user to trusted-users in the nix.conf of the store's nix-daemon and restart it, " +
  "or let the builders sign what they build (secret-key-files in each builder's nix.conf) and add their public keys to the store's trusted-public-keys";

const FIXES: Partial<Record<RefusalKind, string>> = {
  signature: SIGNATURE_FIXES,
  notTrusted: "add the user to trusted-users in that store's nix.conf, as Nix requires of a remote builder's user",
};
