import { describe, expect, it } from 'vitest';
import { DatabaseMismatch, missingColumns, pathInfoFromRow, renderContentAddress, schemaVersionProblem, type InfoRow } from '../../src/store/nixDatabase.js';

const PATH = '/nix/store/nhi5qvrisdb65v3l8axi95172gvahgwg-upload-x';
const DEP = '/nix/store/0ac2g53mff444hjj8nqx20fjl0f04dqp-dep';
const DRV = '/nix/store/m5xnj00riva5am58l6wx5xpgyi2yxr8s-upload-x.drv';
// One SHA-256 in Nix's three notations (nix-hash --to-base32, nix hash to-sri).
const BASE16 = '8ad3ae692c41b7a239fcf3b7ddfa7c05a12e16ad5dadf8c53b1488194b056c83';
const BASE32 = '10vc0m5ik20l7g2zibaxmlb2x885gkxdvdzkzhws5ds15ilsxlwa';
const SRI = 'sha256-itOuaSxBt6I5/PO33fp8BaEuFq1drfjFOxSIGUsFbIM=';
// Another, for content addresses (nix-hash --to-base16, nix hash to-base64).
const CA32 = '0bdacwc6wpwjawjva99bmqwb43y5b6cbjvhz9mrc2i9mlzgc9588';
const CA16 = '0895c4dea73545c1724d1f6eb99859c50fb238ae2b25b52557925f6e1867aa2d';
const CA64 = 'CJXE3qc1RcFyTR9uuZhZxQ+yOK4rJbUlV5Jfbhhnqi0=';

function row(overrides: Partial<InfoRow> = {}): InfoRow {
  return { id: 7, hash: `sha256:${BASE16}`, registrationTime: 1_795_889_975, deriver: null, narSize: 488, ultimate: null, sigs: null, ca: null, ...overrides };
}

describe('schemaVersionProblem', () => {
  it("takes Nix's schema 10, written with or without a newline", () => {
    expect(schemaVersionProblem('10')).toBeUndefined();
    expect(schemaVersionProblem('10\n')).toBeUndefined();
  });

  it('refuses any other version, and text that is no number', () => {
    expect(schemaVersionProblem('11')).toBe('its schema version is 11, not 10');
    expect(schemaVersionProblem('7')).toBe('its schema version is 7, not 10');
    expect(schemaVersionProblem('')).toMatch(/not a version number/);
    expect(schemaVersionProblem('10 beta')).toMatch(/not a version number/);
  });
});

describe('missingColumns', () => {
  const complete = {
    ValidPaths: ['id', 'path', 'hash', 'registrationTime', 'deriver', 'narSize', 'ultimate', 'sigs', 'ca'],
    Refs: ['referrer', 'reference'],
  };

  it('is satisfied by the columns of Nix 2.x, and ignores columns it does not read', () => {
    expect(missingColumns(complete)).toBeUndefined();
    expect(missingColumns({ ...complete, ValidPaths: [...complete.ValidPaths, 'extra'] })).toBeUndefined();
  });

  it('names each column the queries read that a table lacks, and a missing table', () => {
    expect(missingColumns({ ...complete, ValidPaths: complete.ValidPaths.filter((c) => c !== 'ca' && c !== 'sigs') })).toBe('it has no column ValidPaths.sigs, ValidPaths.ca');
    expect(missingColumns({ ValidPaths: complete.ValidPaths })).toBe('it has no column Refs.referrer, Refs.reference');
  });
});

describe('pathInfoFromRow', () => {
  it('gives what nix-store --serve sends: base32 NAR hash, the NAR size twice, no deriver, no content address, no signatures', () => {
    expect(pathInfoFromRow(PATH, row(), [])).toEqual({ path: PATH, references: [], downloadSize: 488, narSize: 488, narHash: `sha256:${BASE32}`, sigs: [] });
  });

  it('reads a NAR hash in any notation Nix parses (base16, base32, SRI)', () => {
    for (const hash of [`sha256:${BASE16}`, `sha256:${BASE32}`, SRI]) expect(pathInfoFromRow(PATH, row({ hash }), []).narHash).toBe(`sha256:${BASE32}`);
  });

  it('sorts references as a StorePathSet and keeps a self-reference', () => {
    expect(pathInfoFromRow(PATH, row(), [PATH, DEP]).references).toEqual([DEP, PATH]);
  });

  it('keeps the deriver, and a NULL NAR size is 0', () => {
    expect(pathInfoFromRow(PATH, row({ deriver: DRV, narSize: null }), [])).toMatchObject({ deriver: DRV, narSize: 0, downloadSize: 0 });
  });

  it('splits signatures on spaces into a sorted set, as tokenizeString<StringSet> does', () => {
    expect(pathInfoFromRow(PATH, row({ sigs: 'z-key:c2ln  a-key:c2ln z-key:c2ln' }), []).sigs).toEqual(['a-key:c2ln', 'z-key:c2ln']);
    expect(pathInfoFromRow(PATH, row({ sigs: '' }), []).sigs).toEqual([]);
  });

  it('renders the content address again, and an empty one is none', () => {
    expect(pathInfoFromRow(PATH, row({ ca: `fixed:r:sha256:${CA16}` }), []).ca).toBe(`fixed:r:sha256:${CA32}`);
    expect(pathInfoFromRow(PATH, row({ ca: '' }), [])).not.toHaveProperty('ca');
  });

  it('refuses what Nix itself would refuse to read', () => {
    expect(() => pathInfoFromRow(PATH, row({ hash: 'sha256:xyz' }), [])).toThrow(DatabaseMismatch);
    expect(() => pathInfoFromRow(PATH, row({ hash: BASE16 }), [])).toThrow(DatabaseMismatch);
    expect(() => pathInfoFromRow(PATH, row({ deriver: '' }), [])).toThrow(DatabaseMismatch);
    expect(() => pathInfoFromRow(PATH, row({ deriver: '/tmp/x.drv' }), [])).toThrow(DatabaseMismatch);
    expect(() => pathInfoFromRow(PATH, row({ ca: 'fixed:' }), [])).toThrow(DatabaseMismatch);
    expect(() => pathInfoFromRow(PATH, row(), ['/nix/store/short'])).toThrow(DatabaseMismatch);
  });
});

describe('renderContentAddress', () => {
  it('brings the hash of text and fixed (flat or recursive) addresses to base32', () => {
    expect(renderContentAddress(PATH, `text:sha256:${CA32}`)).toBe(`text:sha256:${CA32}`);
    expect(renderContentAddress(PATH, `text:sha256:${CA16}`)).toBe(`text:sha256:${CA32}`);
    expect(renderContentAddress(PATH, `fixed:sha256:${CA64}`)).toBe(`fixed:sha256:${CA32}`);
    expect(renderContentAddress(PATH, `fixed:r:sha256:${CA32}`)).toBe(`fixed:r:sha256:${CA32}`);
    expect(renderContentAddress(PATH, '')).toBe('');
  });

  it('refuses what parseContentAddress refuses: unknown kinds, recursive or non-SHA-256 text, SRI after the type', () => {
    for (const text of [`source:sha256:${CA32}`, `text:r:sha256:${CA32}`, `text:sha1:${'0'.repeat(32)}`, `fixed:sha256-${CA64}`, `fixed:sha256:${CA32}x`, 'fixed:r:sha256:']) {
      expect(() => renderContentAddress(PATH, text), text).toThrow(DatabaseMismatch);
    }
  });
});
