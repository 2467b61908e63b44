#!/usr/bin/env node
// check-rooms.mjs — the import rules between the rooms of src/checkpoint/ (and
// of src/ around it), checked in `npm test` beside the cycle check. Each rule
// names the room and what it may import; type-only imports count too (a type
// is knowledge of the other room). Exits 1 listing every import that breaks one.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const repo = resolve(dirname(new URL(import.meta.url).pathname), '..');
// --src DIR checks another tree (the unit test gives it one that breaks the rules).
const srcFlag = process.argv.indexOf('--src');
const src = srcFlag > 0 ? resolve(process.argv[srcFlag + 1]) : join(repo, 'src');
const CK = 'checkpoint';

// room -> the rooms (path prefixes under src/) it may import, besides itself.
const BASE = ['errors.ts', 'log.ts', 'host/'];
const RULES = {
  // Bytes in and out: tar, checks on disk, exports. Knows the file names, nothing of CRIU or policy.
  [`${CK}/archive/`]: [...BASE, `${CK}/format/layout.ts`],
  // CRIU's images: one bounded reader. Knows nothing of stasis.
  [`${CK}/criu/`]: [...BASE],
  // The folder on disk: file names, stasis.json, other engines' layouts.
  [`${CK}/format/`]: [...BASE, `${CK}/criu/`, 'runtime/spec.ts', 'runtime/network.ts', 'runtime/create-plan.ts', 'runtime/criu.ts', 'state/'],
  // What an untrusted checkpoint may get.
  [`${CK}/policy/`]: [...BASE, `${CK}/criu/`, `${CK}/format/`, 'runtime/spec.ts', 'state/'],
  // Checkpoint images (OCI).
  [`${CK}/oci/`]: [...BASE, `${CK}/archive/`, `${CK}/criu/`, `${CK}/format/`],
  // The checkpoint store: chunk files, manifests, pack and materialise. Knows the folder's file names, nothing of CRIU or policy.
  [`${CK}/store/`]: [...BASE, `${CK}/format/layout.ts`, 'state/'],
  // The verbs (files directly in checkpoint/) may import every sub-room and runtime/state/host.
  [`${CK}/`]: [...BASE, `${CK}/`, 'runtime/', 'state/'],
  // A move uses the verbs and the archive, never the policy's or CRIU's insides.
  ['migrate/']: [...BASE, 'migrate/', `${CK}/`, 'runtime/', 'state/'],
  // The image store and the registry client (skopeo): reads layouts and layers with the checkpoint's archive and OCI rooms.
  ['image/']: [...BASE, 'image/', `${CK}/archive/`, `${CK}/oci/`, 'runtime/create-plan.ts'],
  ['runtime/']: [...BASE, 'runtime/', 'state/'],
  ['state/']: [...BASE, 'state/'],
  ['host/']: ['errors.ts', 'log.ts', 'host/'],
  ['output/']: [...BASE, 'output/'],
  // The bottom: --debug writes through host/stdio.ts, errors import nothing.
  ['log.ts']: ['host/'],
  ['errors.ts']: [],
};
const MIGRATE_MAY_NOT = [`${CK}/criu/images.ts`, `${CK}/policy/spec.ts`, `${CK}/policy/linux.ts`, `${CK}/policy/processes.ts`];

function roomOf(file) {
  return Object.keys(RULES).filter((room) => file.startsWith(room)).sort((a, b) => b.length - a.length)[0];
}

function* walk(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(path);
    else if (entry.isFile() && path.endsWith('.ts')) yield path;
  }
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s*['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/g;
const broken = [];
for (const path of walk(src)) {
  const file = relative(src, path);
  const room = roomOf(file);
  if (!room) continue;
  const allowed = [room, ...RULES[room]];
  for (const match of readFileSync(path, 'utf8').matchAll(IMPORT)) {
    const target = relative(src, resolve(dirname(path), match[1] ?? match[2]));
    const sub = roomOf(target);
    // A sub-room never imports the verbs above it.
    const intoVerbs = sub === `${CK}/` && room !== `${CK}/` && room !== 'migrate/';
    const denied = room === 'migrate/' && MIGRATE_MAY_NOT.some((p) => target.startsWith(p));
    if (intoVerbs || denied || !allowed.some((prefix) => target === prefix || target.startsWith(prefix))) {
      broken.push(`${file} imports ${target} (${room} may import: ${allowed.join(', ')})`);
    }
  }
}
if (broken.length > 0) {
  console.error(`check-rooms: ${broken.length} import(s) break the room rules:\n  ${broken.join('\n  ')}`);
  process.exit(1);
}
console.log('check-rooms: every import follows the room rules');
