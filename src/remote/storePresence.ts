/**
 * Which of a list of store paths a builder has on disk, asked with a shell
 * command rather than with `nix-store --serve`: Nix's start alone costs a
 * builder about 90 ms of CPU (measured, Nix 2.8), and most builders of a run
 * hold none of the outputs asked about. Only the paths present are then
 * asked of Nix, whose database alone says whether a path is valid: a path on
 * disk may still be building, or be left over from one that failed.
 *
 * The reverse is what makes this sound: a valid path is on disk. A builder
 * whose Nix keeps its store elsewhere than the store directory (a chroot
 * store) is seen as holding nothing, and builds what it would have found.
 */

/** A store directory that can stand in the command as it is (Nix's default, or one like it). */
const PLAIN_DIRECTORY = /^\/[A-Za-z0-9._+/-]*$/;

/** Up to this many bytes of paths go on the command line: a command is at most 128 KiB (Linux's MAX_ARG_STRLEN). */
const INLINE_LIMIT = 16 * 1024;

/** The command to run, and what it reads on its stdin. */
export interface PresenceQuery {
  command: string;
  input?: Buffer;
}

/**
 * The question, or undefined when the store directory could not stand in
 * the command as it is. A few paths are named in the command and tested by
 * the shell itself: every program a command starts costs a builder about
 * 10 ms of CPU (measured: a session running `true` 24 ms, `xargs ls` 49 ms).
 * Many paths come on stdin instead, where xargs hands them to `ls -d` in
 * batches. Both name a path that is a dangling symbolic link too (a valid
 * store path can be one). A missing path makes ls exit 1 or 2 and xargs 123,
 * which is the answer, not a failure: only a reply that ends with `@end` is
 * complete.
 */
export function presenceQuery(storeDir: string, paths: readonly string[]): PresenceQuery | undefined {
  if (!PLAIN_DIRECTORY.test(storeDir)) return undefined;
  const inline = paths.reduce((n, p) => n + p.length + 3, 0) <= INLINE_LIMIT;
  // Store path names never hold a quote; single quotes keep a `?` or `=` in one from meaning anything to the shell.
  const test = inline ? `for p in ${paths.map((p) => `'${p}'`).join(' ')}; do if [ -e "$p" ] || [ -L "$p" ]; then echo "$p"; fi; done; echo @end` : 'xargs ls -d 2>/dev/null; [ $? -le 123 ] && echo @end';
  const command = `if [ -d ${storeDir} ]; then echo @present; ${test}; else echo @nostore; fi`;
  return inline ? { command } : { command, input: Buffer.from(paths.map((p) => `${p}\n`).join(''), 'utf8') };
}

/**
 * The asked paths the reply names (a line that names anything else is
 * ignored: nothing a builder sends is trusted); none where there is no
 * store directory yet (a builder that has never held a path). Undefined
 * when the reply is not a complete answer: a command that failed midway, or
 * a shell that did not run it. The caller then asks Nix.
 */
export function parsePresence(stdout: string, asked: readonly string[]): string[] | undefined {
  const lines = stdout.split('\n');
  if (lines[0] === '@nostore' && lines.slice(1).every((l) => l === '')) return [];
  if (lines[0] !== '@present') return undefined;
  const end = lines.indexOf('@end');
  if (end < 0) return undefined;
  const wanted = new Set(asked);
  const present = new Set<string>();
  for (const line of lines.slice(1, end)) if (wanted.has(line)) present.add(line);
  return asked.filter((p) => present.has(p));
}
