import { describe, expect, it } from 'vitest';
import { parsePresence, presenceQuery } from '../../src/remote/storePresence.js';

const a = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-a';
const b = '/nix/store/abcdfghijklmnpqrsvwxyz0123456789-b?x=1';

describe('presenceQuery', () => {
  it('names a few paths in the command, single-quoted, tested by the shell alone', () => {
    expect(presenceQuery('/nix/store', [a, b])).toEqual({
      command: `if [ -d /nix/store ]; then echo @present; for p in '${a}' '${b}'; do if [ -e "$p" ] || [ -L "$p" ]; then echo "$p"; fi; done; echo @end; else echo @nostore; fi`,
    });
  });

  it('sends many paths on stdin, one per line, for xargs and ls -d', () => {
    const many = Array.from({ length: 400 }, (_, i) => `/nix/store/0123456789abcdfghijklmnpqrsvwxyz-p${i}`);
    const query = presenceQuery('/nix/store', many)!;
    expect(query.command).toBe('if [ -d /nix/store ]; then echo @present; xargs ls -d 2>/dev/null; [ $? -le 123 ] && echo @end; else echo @nostore; fi');
    expect(query.input?.toString('utf8')).toBe(many.map((p) => `${p}\n`).join(''));
  });

  it.each([["/nix/st'ore"], ['/nix/store dir'], ['nix/store'], ['/nix/$(reboot)']])('asks Nix instead when the store directory is %s', (dir) => {
    expect(presenceQuery(dir, [a])).toBeUndefined();
  });
});

describe('parsePresence', () => {
  it.each([
    ['both present, in the order asked', `@present\n${b}\n${a}\n@end\n`, [a, b]],
    ['none present', '@present\n@end\n', []],
    ['a line naming what was not asked is ignored', `@present\n/nix/store/zzzz-other\n../../etc/passwd\n${a}\n@end\n`, [a]],
    ['a path named twice counts once', `@present\n${a}\n${a}\n@end\n`, [a]],
    ['no store directory yet: nothing held', '@nostore\n', []],
  ])('%s', (_, reply, expected) => {
    expect(parsePresence(reply, [a, b])).toEqual(expected);
  });

  it.each([
    ['a store directory named, then more', '@nostore\nsomething\n'],
    ['a reply cut short (no @end)', `@present\n${a}\n`],
    ['a shell that printed something first', `Welcome!\n@present\n@end\n`],
    ['nothing', ''],
  ])('cannot tell from %s', (_, reply) => {
    expect(parsePresence(reply, [a])).toBeUndefined();
  });

  it('reads nothing after @end', () => {
    expect(parsePresence(`@present\n@end\n${a}\n`, [a])).toEqual([]);
  });
});
