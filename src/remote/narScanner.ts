import type { ServeReader } from './serveCodec/parser.js';
import { Serializer } from './serveCodec/serializer.js';

const NAR_MAGIC = 'nix-archive-1';
/** Linux PATH_MAX: no symlink target or token in a NAR can be longer. */
const MAX_TOKEN_LENGTH = 4096;
/** Linux NAME_MAX. */
const MAX_NAME_LENGTH = 255;
/** A path of PATH_MAX bytes nests at most 2048 directories ("a/a/..."), each two frames here. */
const MAX_STACK_DEPTH = 4 * 2048;

type NodeType = 'unknown' | 'regular' | 'directory' | 'symlink';
interface NodeFrame {
  kind: 'node';
  type: NodeType;
  /** Name of the previous directory entry: Nix requires strictly sorted names. */
  previousName?: Buffer;
}
interface EntryFrame {
  kind: 'entry';
  parent: NodeFrame;
  name?: Buffer;
}
type Frame = NodeFrame | EntryFrame;

/**
 * Streams one NAR (Nix's `libutil/archive` format) through, byte for byte,
 * while checking its grammar the way Nix's `parseDump` does. File contents
 * pass through in the source's chunks; only tokens are buffered. Directory
 * nesting uses an explicit stack, so hostile depth cannot exhaust the JS stack.
 */
export async function* scanNar(reader: ServeReader): AsyncGenerator<Buffer> {
  const magic = await token(reader, 'the NAR header');
  if (magic.toString('latin1') !== NAR_MAGIC) throw reader.malformed('the data is not a NAR (no nix-archive-1 header)');
  yield encode(magic);

  yield* expectOpen(reader, 'the NAR root node');
  const stack: Frame[] = [{ kind: 'node', type: 'unknown' }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1] as Frame;
    const field = await token(reader, 'a NAR field');
    yield encode(field);
    const name = field.toString('latin1');
    if (name === ')') {
      stack.pop();
      continue;
    }
    if (top.kind === 'node') yield* nodeField(reader, top, name, stack);
    else yield* entryField(reader, top, name, stack);
    if (stack.length > MAX_STACK_DEPTH) throw reader.malformed('the NAR nests directories deeper than any file system allows');
  }
}

async function* nodeField(reader: ServeReader, node: NodeFrame, field: string, stack: Frame[]): AsyncGenerator<Buffer> {
  if (field === 'type') {
    if (node.type !== 'unknown') throw reader.malformed('a NAR node has two type fields');
    const type = await token(reader, 'a NAR node type');
    const typeName = type.toString('latin1');
    if (typeName !== 'regular' && typeName !== 'directory' && typeName !== 'symlink') {
      throw reader.malformed(`unknown NAR node type ${JSON.stringify(typeName.slice(0, 40))}`);
    }
    node.type = typeName;
    yield encode(type);
  } else if (field === 'contents' && node.type === 'regular') {
    const length = await reader.u64('the length of a NAR file');
    yield new Serializer(8).u64(length).flush();
    yield* reader.passthrough(length, 'the contents of a NAR file');
    const padding = (8 - (length % 8)) % 8;
    await reader.padding(length, 'a NAR file');
    if (padding > 0) yield Buffer.alloc(padding);
  } else if (field === 'executable' && node.type === 'regular') {
    const marker = await token(reader, 'the NAR executable marker');
    if (marker.length !== 0) throw reader.malformed('the NAR executable marker is not empty');
    yield encode(marker);
  } else if (field === 'target' && node.type === 'symlink') {
    yield encode(await token(reader, 'a NAR symlink target'));
  } else if (field === 'entry' && node.type === 'directory') {
    yield* expectOpen(reader, 'a NAR directory entry');
    stack.push({ kind: 'entry', parent: node });
  } else {
    throw reader.malformed(`unexpected NAR field ${JSON.stringify(field.slice(0, 40))} in a ${node.type} node`);
  }
}

async function* entryField(reader: ServeReader, entry: EntryFrame, field: string, stack: Frame[]): AsyncGenerator<Buffer> {
  if (field === 'name') {
    const name = await token(reader, 'a NAR entry name', MAX_NAME_LENGTH);
    checkEntryName(reader, name, entry.parent.previousName);
    entry.name = name;
    entry.parent.previousName = name;
    yield encode(name);
  } else if (field === 'node') {
    if (entry.name === undefined) throw reader.malformed('a NAR directory entry has a node but no name');
    yield* expectOpen(reader, 'a NAR entry node');
    stack.push({ kind: 'node', type: 'unknown' });
  } else {
    throw reader.malformed(`unexpected NAR field ${JSON.stringify(field.slice(0, 40))} in a directory entry`);
  }
}

function checkEntryName(reader: ServeReader, name: Buffer, previous: Buffer | undefined): void {
  const text = name.toString('latin1');
  if (name.length === 0 || text === '.' || text === '..' || name.includes(0x2f) || name.includes(0)) {
    throw reader.malformed(`the NAR has an invalid file name ${JSON.stringify(text.slice(0, 40))}`);
  }
  if (previous !== undefined && Buffer.compare(name, previous) <= 0) {
    throw reader.malformed('the NAR directory entries are not sorted');
  }
}

async function* expectOpen(reader: ServeReader, what: string): AsyncGenerator<Buffer> {
  const open = await token(reader, what);
  if (open.toString('latin1') !== '(') throw reader.malformed(`${what} does not start with "("`);
  yield encode(open);
}

function token(reader: ServeReader, what: string, maxLength = MAX_TOKEN_LENGTH): Promise<Buffer> {
  return reader.stringBytes(what, maxLength);
}

/** The wire form of a token we just read: identical bytes, because the padding was checked to be zero. */
function encode(value: Buffer): Buffer {
  return new Serializer(value.length + 16).string(value).flush();
}
