// The CRIU configuration file a dump names to runc through a label in runc's state.json
// (src/runtime/criu-config.ts): runc's own file is edited as text, and put back after.
// A real runc checkpoint reading it is in test/integration/checkpoint.test.ts.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DUMP_CONFIG_FILE, adminCriuConfigHas, criuConfigText, forgetDumpConfig, nameDumpConfig } from '../../src/runtime/criu-config.ts';

// As runc 1.1 writes it: one line, a 64-bit number a JSON round trip would change.
const STATE = (labels: string) =>
  `{"id":"c1","init_process_pid":42,"config":{"memory_swap":18446744073709551615,"labels":${labels},"version":"1.0.2"},"cgroup_paths":{}}`;

describe('the CRIU configuration of a dump', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stasis-criu-config-'));
  test.after(() => rmSync(dir, { recursive: true, force: true }));
  const setUp = (labels: string) => {
    const root = mkdtempSync(join(dir, 'root-'));
    mkdirSync(join(root, 'c1'));
    writeFileSync(join(root, 'c1', 'state.json'), STATE(labels));
    const work = mkdtempSync(join(dir, 'work-'));
    return { root, state: join(root, 'c1', 'state.json'), file: join(work, DUMP_CONFIG_FILE) };
  };

  test('the label goes in by text (runc\'s numbers untouched), the file is written, and the undo puts both back', () => {
    const { root, state, file } = setUp('["bundle=/b","org.stasis.id=c1"]');
    const before = readFileSync(state, 'utf8');
    const undo = nameDumpConfig(root, 'c1', file, ['network-lock skip']);
    assert.ok(undo !== null);
    const during = readFileSync(state, 'utf8');
    assert.ok(during.includes('18446744073709551615'), 'the 64-bit number as runc wrote it');
    assert.deepEqual(JSON.parse(during).config.labels, [`org.criu.config=${file}`, 'bundle=/b', 'org.stasis.id=c1']);
    assert.match(readFileSync(file, 'utf8'), /(^|\n)network-lock skip\n$/);
    undo();
    assert.equal(readFileSync(state, 'utf8'), before);
    assert.equal(existsSync(file), false);
  });

  test('an empty label list, and a label left by a killed dump, are handled', () => {
    const empty = setUp('[]');
    const undo = nameDumpConfig(empty.root, 'c1', empty.file, ['network-lock skip']);
    assert.deepEqual(JSON.parse(readFileSync(empty.state, 'utf8')).config.labels, [`org.criu.config=${empty.file}`]);
    undo!();
    assert.equal(readFileSync(empty.state, 'utf8'), STATE('[]'));

    const stale = setUp(`["bundle=/b","org.criu.config=/gone/.partial-1/${DUMP_CONFIG_FILE}"]`);
    nameDumpConfig(stale.root, 'c1', stale.file, ['network-lock skip'])!();
    assert.deepEqual(JSON.parse(readFileSync(stale.state, 'utf8')).config.labels, ['bundle=/b'], 'the stale label replaced, then taken out');

    // A dump that names no file takes a stale label out, and leaves anything else as it is.
    const left = setUp(`["org.criu.config=/gone/.partial-1/${DUMP_CONFIG_FILE}","bundle=/b"]`);
    forgetDumpConfig(left.root, 'c1');
    assert.equal(readFileSync(left.state, 'utf8'), STATE('["bundle=/b"]'));
    const mine = setUp('["bundle=/b","org.criu.config=/etc/mine.conf"]');
    forgetDumpConfig(mine.root, 'c1');
    assert.equal(readFileSync(mine.state, 'utf8'), STATE('["bundle=/b","org.criu.config=/etc/mine.conf"]'));
    forgetDumpConfig(mine.root, 'missing');
  });

  test("a configuration file the spec names itself stays in charge: nothing changes", () => {
    const { root, state, file } = setUp('["bundle=/b","org.criu.config=/etc/mine.conf"]');
    const before = readFileSync(state, 'utf8');
    assert.equal(nameDumpConfig(root, 'c1', file, ['network-lock skip']), null);
    assert.equal(readFileSync(state, 'utf8'), before);
    assert.equal(existsSync(file), false);
  });

  test('no state, or a state whose labels are not where runc writes them: nothing changes', () => {
    const { root, file } = setUp('null');
    assert.equal(nameDumpConfig(root, 'c1', file, ['network-lock skip']), null);
    assert.equal(nameDumpConfig(root, 'missing', file, ['network-lock skip']), null);
    assert.equal(existsSync(file), false);
  });

  test("the admin's runc.conf comes first, then stasis's lines", () => {
    const admin = join(dir, 'runc.conf');
    writeFileSync(admin, 'tcp-established');
    assert.equal(criuConfigText(['network-lock skip'], admin), 'tcp-established\nnetwork-lock skip\n');
    assert.equal(criuConfigText(['tcp-close'], join(dir, 'none.conf')), 'tcp-close\n');
    // tcp-established there keeps CRIU's network lock (checkpoint/dump.ts asks).
    assert.equal(adminCriuConfigHas('tcp-established', admin), true);
    writeFileSync(admin, '# tcp-established\n--tcp-established-x\nlog-file /x\n');
    assert.equal(adminCriuConfigHas('tcp-established', admin), false);
    writeFileSync(admin, 'log-file /x\n  --tcp-established\n');
    assert.equal(adminCriuConfigHas('tcp-established', admin), true);
    assert.equal(adminCriuConfigHas('tcp-established', join(dir, 'none.conf')), false);
  });
});
