/**
 * `npm run lint`'s structure check, the rules of docs/architecture.md that
 * ESLint does not see:
 * - every src/ folder has its row in the folder table under "Layers and
 *   folders", and the table names no folder that is gone;
 * - imports between src/ folders run one way, down that table: a folder
 *   imports only folders listed below it (so the folder graph has no cycle),
 *   and no two files import each other, even through others;
 * - a source file over LONG_FILE lines is named under "Long files", which
 *   says why it stays long;
 * - every `file.ts` the document names exists.
 * `--report` prints the folder graph, every file-level cycle and the file
 * sizes instead of only failing.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const LONG_FILE = 400;
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^'";]*?from\s*'([^']+)'|import\(\s*'([^']+)'\s*\)/g;

/** src-relative file → src-relative files it imports. */
function importGraph(files: string[]): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const targets = [...text.matchAll(IMPORT)]
      .map((m) => m[1] ?? m[2]!)
      .filter((spec) => spec.startsWith('.'))
      .map((spec) => relative(src, resolve(dirname(file), spec.replace(/\.js$/, '.ts'))));
    graph.set(relative(src, file), [...new Set(targets)]);
  }
  return graph;
}

const folderOf = (file: string): string => (file.includes('/') ? file.slice(0, file.indexOf('/')) : '.');

/** Strongly connected components with more than one member (Tarjan), each sorted. */
function cycles(graph: Map<string, Set<string>>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1) found.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

const files = sourceFiles(src).sort();
const fileGraph = importGraph(files);
const folderGraph = new Map<string, Set<string>>();
const folderEdges = new Map<string, string[]>();
for (const [file, targets] of fileGraph) {
  const from = folderOf(file);
  if (!folderGraph.has(from)) folderGraph.set(from, new Set());
  for (const target of targets) {
    const to = folderOf(target);
    if (to === from) continue;
    folderGraph.get(from)!.add(to);
    const key = `${from} → ${to}`;
    folderEdges.set(key, [...(folderEdges.get(key) ?? []), `${file} → ${target}`]);
  }
}
const folderCycles = cycles(folderGraph);
const fileCycles = cycles(new Map([...fileGraph].map(([f, t]) => [f, new Set(t)])));

const architecture = readFileSync(join(root, 'docs/architecture.md'), 'utf8');

/** The text of one `## heading` section of architecture.md. */
function section(heading: string): string {
  const start = architecture.indexOf(`\n## ${heading}`);
  if (start < 0) throw new Error(`docs/architecture.md has no "## ${heading}" section`);
  const end = architecture.indexOf('\n## ', start + 1);
  return architecture.slice(start, end < 0 ? undefined : end);
}

/** Folders in the order of the layer table, top first. */
const layers = [...section('Layers and folders').matchAll(/^\| `([a-zA-Z]+)\/` \|/gm)].map((m) => m[1]!);
const layerOf = new Map(layers.map((folder, i) => [folder, i]));
const folders = [...new Set(files.map((file) => folderOf(relative(src, file))))].sort();
const untabled = folders.filter((folder) => !layerOf.has(folder));
const gone = layers.filter((folder) => !folders.includes(folder));
const upward = [...folderEdges]
  .filter(([key]) => {
    const [from, to] = key.split(' → ') as [string, string];
    return layerOf.has(from) && layerOf.has(to) && layerOf.get(to)! < layerOf.get(from)!;
  })
  .map(([key, edges]) => `${key} imports up the layer table (${edges[0]}${edges.length > 1 ? ` and ${edges.length - 1} more` : ''})`);

/** Every `file.ts` the document names exists: by its path (from the repository or from src/), or, named bare, somewhere in the code. */
const codeDirs = ['src', 'test', 'scripts', 'bench'].map((dir) => join(root, dir));
const everyFile = codeDirs.flatMap((dir) => sourceFiles(dir)).map((file) => relative(root, file));
const baseNames = new Set(everyFile.map((file) => file.slice(file.lastIndexOf('/') + 1)));
const named = [...new Set([...architecture.matchAll(/`([\w./-]+\.ts)`/g)].map((m) => m[1]!))];
const dangling = named.filter((name) =>
  existsSync(join(root, name))
    ? false
    : name.includes('/') ? !everyFile.some((file) => file === name || file === `src/${name}` || file.endsWith(`/${name}`)) : !baseNames.has(name),
);

const longFiles = section('Long files');
const sizes = files.map((file) => ({ file: relative(src, file), lines: readFileSync(file, 'utf8').split('\n').length - 1 }));
const unexplained = sizes.filter((s) => s.lines > LONG_FILE && !longFiles.includes(`src/${s.file}`));

if (process.argv.includes('--report')) {
  for (const s of [...sizes].sort((a, b) => b.lines - a.lines).slice(0, 15)) console.log(`${String(s.lines).padStart(5)} src/${s.file}`);
  console.log('folder imports:');
  for (const [from, to] of [...folderGraph].sort()) console.log(`  ${from} → ${[...to].sort().join(', ')}`);
  console.log('layers, top first:', layers.join(' › '));
  console.log('folder cycles:', folderCycles.length === 0 ? 'none' : '');
  for (const cycle of folderCycles) {
    console.log(`  ${cycle.join(' ↔ ')}`);
    for (const a of cycle)
      for (const b of cycle) for (const edge of folderEdges.get(`${a} → ${b}`) ?? []) console.log(`    ${edge}`);
  }
  console.log('file cycles:', fileCycles.length === 0 ? 'none' : '');
  for (const cycle of fileCycles) console.log(`  ${cycle.join(' ↔ ')}`);
}

const problems = [
  ...untabled.map((folder) => `src/${folder}/ has no row in the folder table of docs/architecture.md ("Layers and folders")`),
  ...gone.map((folder) => `docs/architecture.md's folder table names ${folder}/, which src/ no longer has`),
  ...upward,
  ...dangling.map((name) => `docs/architecture.md names ${name}, which is not in the repository`),
  ...folderCycles.map((c) => `import cycle between src/ folders: ${c.join(', ')} (run with --report for the imports)`),
  ...fileCycles.map((c) => `import cycle between files: ${c.join(', ')}`),
  ...unexplained.map((s) => `src/${s.file} has ${s.lines} lines; split it or say in docs/architecture.md why it stays whole`),
];
for (const problem of problems) console.error(`check-architecture: ${problem}`);
process.exitCode = problems.length === 0 ? 0 : 1;
