import { Serializer } from '../../src/remote/serveCodec/serializer.js';

/** A file system object as a NAR holds it; names may be raw bytes (a NAR's names are bytes, not text). */
export type NarNode =
  | { type: 'regular'; contents: Buffer; executable?: boolean }
  | { type: 'symlink'; target: string }
  | { type: 'directory'; entries: [string | Buffer, NarNode][] };

function writeNode(s: Serializer, node: NarNode): void {
  s.string('(').string('type').string(node.type);
  if (node.type === 'regular') {
    if (node.executable) s.string('executable').string('');
    s.string('contents').string(node.contents);
  } else if (node.type === 'symlink') {
    s.string('target').string(node.target);
  } else {
    for (const [name, child] of node.entries) {
      s.string('entry').string('(').string('name').string(name).string('node');
      writeNode(s, child);
      s.string(')');
    }
  }
  s.string(')');
}

/** The NAR of `node`, byte for byte as Nix's dumpPath writes it (entries in the order given). */
export function narBytes(node: NarNode): Buffer {
  const s = new Serializer().string('nix-archive-1');
  writeNode(s, node);
  return s.flush();
}
