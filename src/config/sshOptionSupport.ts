/**
 * What offload does with each ssh_config keyword. offload opens its own SSH
 * connections (ssh2), so every keyword falls in one of three groups:
 * honoured; without effect on a non-interactive session that runs
 * `nix-store --serve` with no forwarding, no terminal and no password
 * prompt (Nix itself runs `ssh -x -a` in batch mode, so these change nothing
 * there either); or not honoured, which the user is told about once per run.
 * A keyword in none of them is unknown (OpenSSH itself would refuse the file
 * unless IgnoreUnknown names it).
 */

/** Read by offload (src/config/sshConfig.ts) and acted on. */
const HONOURED = new Set([
  'host', 'match', 'include', 'hostname', 'port', 'user', 'identityfile', 'identitiesonly', 'identityagent',
  'userknownhostsfile', 'globalknownhostsfile', 'hostkeyalias', 'stricthostkeychecking', 'hashknownhosts',
  'proxyjump', 'proxycommand', 'connecttimeout', 'serveraliveinterval', 'serveralivecountmax', 'ignoreunknown',
  'certificatefile', 'compression',
]);

/** No effect on offload's sessions; nothing to tell. */
const WITHOUT_EFFECT = new Set([
  'batchmode', 'loglevel', 'logverbose', 'syslogfacility', 'escapechar', 'enableescapecommandline', 'obscurekeystroketiming',
  'forwardagent', 'forwardx11', 'forwardx11trusted', 'forwardx11timeout', 'xauthlocation', 'requesttty', 'sendenv',
  'gssapiauthentication', 'gssapidelegatecredentials', 'gssapikeyexchange', 'gssapiclientidentity', 'gssapiserveridentity',
  'gssapirenewalforcesrekey', 'gssapitrustdns', 'gssapikexalgorithms',
  'visualhostkey', 'fingerprinthash', 'addkeystoagent', 'usekeychain', 'passwordauthentication', 'kbdinteractiveauthentication',
  'challengeresponseauthentication', 'kbdinteractivedevices', 'numberofpasswordprompts', 'ipqos', 'tcpkeepalive',
  'protocol', 'useroaming', 'nohostauthenticationforlocalhost', 'canonicaldomains', 'canonicalizefallbacklocal',
  'canonicalizemaxdots', 'canonicalizepermittedcnames', 'tunneldevice', 'exitonforwardfailure', 'clearallforwardings',
  'gatewayports', 'permitremoteopen', 'streamlocalbindmask', 'streamlocalbindunlink', 'stdinnull', 'forkafterauthentication',
  'sessiontype', 'hostbasedacceptedalgorithms', 'hostbasedkeytypes', 'localcommand', 'updatehostkeys', 'checkhostip',
  'securitykeyprovider', 'usedns',
]);

/** Not honoured: told once per run when set to something that would matter. The value is lower-cased. */
const NOT_HONOURED: ReadonlyMap<string, { matters: (value: string) => boolean; why?: string }> = new Map([
  ['controlmaster', { matters: (v) => v !== 'no', why: 'offload keeps one connection per builder itself' }],
  ['controlpath', { matters: (v) => v !== 'none', why: 'offload keeps one connection per builder itself' }],
  ['controlpersist', { matters: (v) => v !== 'no', why: 'offload keeps one connection per builder itself' }],
  ['proxyusefdpass', { matters: (v) => v !== 'no' }],
  ['localforward', { matters: () => true }],
  ['remoteforward', { matters: () => true }],
  ['dynamicforward', { matters: () => true }],
  ['tunnel', { matters: (v) => v !== 'no' }],
  ['remotecommand', { matters: (v) => v !== 'none' }],
  ['permitlocalcommand', { matters: (v) => v === 'yes' }],
  ['setenv', { matters: () => true }],
  ['ciphers', { matters: () => true, why: "ssh2's own algorithm lists are used" }],
  ['macs', { matters: () => true, why: "ssh2's own algorithm lists are used" }],
  ['kexalgorithms', { matters: () => true, why: "ssh2's own algorithm lists are used" }],
  ['hostkeyalgorithms', { matters: () => true, why: 'the host key types known for the host decide' }],
  ['pubkeyacceptedalgorithms', { matters: () => true }],
  ['pubkeyacceptedkeytypes', { matters: () => true }],
  ['casignaturealgorithms', { matters: () => true }],
  ['requiredrsasize', { matters: () => true }],
  ['rekeylimit', { matters: () => true }],
  ['addressfamily', { matters: (v) => v !== 'any' }],
  ['bindaddress', { matters: () => true }],
  ['bindinterface', { matters: () => true }],
  ['canonicalizehostname', { matters: (v) => v !== 'no' }],
  ['knownhostscommand', { matters: (v) => v !== 'none' }],
  ['revokedhostkeys', { matters: () => true }],
  ['verifyhostkeydns', { matters: (v) => v !== 'no' }],
  ['pkcs11provider', { matters: (v) => v !== 'none' }],
  ['hostbasedauthentication', { matters: (v) => v === 'yes' }],
  ['pubkeyauthentication', { matters: (v) => v === 'no', why: 'offload logs in with keys only' }],
  ['preferredauthentications', { matters: () => true, why: 'offload logs in with keys only' }],
  ['connectionattempts', { matters: (v) => v !== '1', why: 'offload retries a builder itself' }],
  ['channeltimeout', { matters: () => true }],
  ['tag', { matters: () => true }],
]);

export type SshOptionSupport = { kind: 'honoured' | 'without effect' } | { kind: 'not honoured'; why?: string } | { kind: 'unknown' };

/** What offload does with `keyword` (lower-case) set to `value`. */
export function sshOptionSupport(keyword: string, value: string): SshOptionSupport {
  if (HONOURED.has(keyword)) return { kind: 'honoured' };
  if (WITHOUT_EFFECT.has(keyword)) return { kind: 'without effect' };
  const notHonoured = NOT_HONOURED.get(keyword);
  if (!notHonoured) return { kind: 'unknown' };
  if (!notHonoured.matters(value.toLowerCase())) return { kind: 'without effect' };
  return notHonoured.why === undefined ? { kind: 'not honoured' } : { kind: 'not honoured', why: notHonoured.why };
}
