/**
 * Localization: the manifest's user-visible strings live in package.nls.json (`%key%` in
 * package.json), the extension's runtime strings go through `vscode.l10n.t` and are exported to
 * l10n/bundle.l10n.json, and any translation a contributor adds keeps the English keys and
 * placeholders.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { getL10nJson, getL10nPseudoLocalized, type l10nJsonFormat } from '@vscode/l10n-dev';

const REPO = path.resolve(__dirname, '..', '..');
const readJson = (file: string): unknown => JSON.parse(fs.readFileSync(path.join(REPO, file), 'utf8'));
const manifest = readJson('package.json') as Record<string, unknown>;
const nls = readJson('package.nls.json') as Record<string, unknown>;

/** Keys whose string values a user reads (commands, views, settings, walkthroughs…), at any depth. */
const VISIBLE = new Set([
  'title',
  'shortTitle',
  'category',
  'name',
  'contextualTitle',
  'contents',
  'description',
  'markdownDescription',
  'enumDescriptions',
  'markdownEnumDescriptions',
  'patternErrorMessage',
  'deprecationMessage',
  'markdownDeprecationMessage',
  'label',
  'altText',
]);

/** Every string under `node`, with its path and whether its key (or its array's key) is a visible one. */
function* strings(node: unknown, at: string, visible: boolean): Generator<{ at: string; value: string; visible: boolean }> {
  if (typeof node === 'string') yield { at, value: node, visible };
  else if (Array.isArray(node)) for (const [i, v] of node.entries()) yield* strings(v, `${at}[${i}]`, visible);
  else if (node && typeof node === 'object') for (const [k, v] of Object.entries(node)) yield* strings(v, `${at}.${k}`, VISIBLE.has(k));
}

function manifestStrings(): { at: string; value: string; visible: boolean }[] {
  return [
    { at: 'displayName', value: String(manifest['displayName']), visible: true },
    { at: 'description', value: String(manifest['description']), visible: true },
    ...strings(manifest['contributes'], 'contributes', false),
    ...strings(manifest['capabilities'], 'capabilities', false),
  ];
}

const KEY = /^%([^%]+)%$/;

describe('package.nls.json (manifest strings)', () => {
  it('every %key% in package.json is in package.nls.json, with a non-empty English text', () => {
    const missing = manifestStrings()
      .map((s) => ({ ...s, key: KEY.exec(s.value)?.[1] }))
      .filter((s) => s.key !== undefined && !(typeof nls[s.key] === 'string' && (nls[s.key] as string).trim() !== ''));
    assert.deepEqual(missing.map((s) => `${s.at}: ${s.value}`), [], 'add these keys to package.nls.json');
  });

  it('no user-visible manifest string is left in plain English in package.json', () => {
    const plain = manifestStrings().filter((s) => s.visible && !KEY.test(s.value));
    assert.deepEqual(
      plain.map((s) => `${s.at}: ${s.value.slice(0, 60)}`),
      [],
      'move these texts to package.nls.json and put "%key%" in package.json (see README, Translating)',
    );
  });

  it('no key of package.nls.json is unused', () => {
    const used = new Set(manifestStrings().flatMap((s) => KEY.exec(s.value)?.[1] ?? []));
    assert.deepEqual(Object.keys(nls).filter((k) => !used.has(k)), [], 'remove these keys from package.nls.json, or use them in package.json');
  });

  it('the manifest points VS Code at the runtime bundle', () => {
    assert.equal(manifest['l10n'], './l10n');
  });
});

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sourceFiles(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

describe('l10n/bundle.l10n.json (runtime strings)', () => {
  it('equals a fresh export of vscode.l10n.t calls in src (run `npm run l10n` after changing a string)', async () => {
    const files = sourceFiles(path.join(REPO, 'src')).map((f) => ({ contents: fs.readFileSync(f, 'utf8'), extension: '.ts' }));
    const fresh = await getL10nJson(files);
    const committed = readJson('l10n/bundle.l10n.json') as l10nJsonFormat;
    const added = Object.keys(fresh).filter((k) => !(k in committed));
    const removed = Object.keys(committed).filter((k) => !(k in fresh));
    assert.deepEqual({ added, removed }, { added: [], removed: [] }, 'l10n/bundle.l10n.json is stale: run npm run l10n and commit l10n/');
    assert.deepEqual(committed, fresh, 'l10n/bundle.l10n.json is stale: run npm run l10n and commit l10n/');
    assert.ok(Object.keys(committed).length > 100, `only ${Object.keys(committed).length} strings exported: is the export looking in src?`);
  });

  it('every vscode.l10n.t call takes a string literal (the export cannot see a variable)', () => {
    const bad: string[] = [];
    for (const f of sourceFiles(path.join(REPO, 'src'))) {
      const text = fs.readFileSync(f, 'utf8');
      for (const m of text.matchAll(/\bl10n\.t\(\s*([^\s])/g)) {
        if (!`'"\``.includes(m[1] ?? '')) bad.push(`${path.relative(REPO, f)}:${text.slice(0, m.index).split('\n').length}`);
      }
      // A template literal with ${…} inside would be a different key at run time than in the bundle.
      for (const m of text.matchAll(/\bl10n\.t\(\s*`([^`]*)`/g)) if (m[1]?.includes('${')) bad.push(`${path.relative(REPO, f)}: \`${m[1]}\``);
    }
    assert.deepEqual(bad, [], 'use vscode.l10n.t("… {0} …", value) with a literal message');
  });
});

/** What a translation must keep: the English keys it translates, and each message's placeholders. */
function translationProblems(english: l10nJsonFormat | Record<string, unknown>, translated: Record<string, unknown>): string[] {
  const text = (v: unknown): string | undefined => (typeof v === 'string' ? v : v && typeof v === 'object' && typeof (v as { message?: unknown }).message === 'string' ? (v as { message: string }).message : undefined);
  const holes = (s: string) => [...s.matchAll(/\{(\d+)\}/g)].map((m) => m[1]).sort().join(',');
  const problems: string[] = [];
  for (const [key, value] of Object.entries(translated)) {
    const en = text(english[key]);
    const tr = text(value);
    if (en === undefined) problems.push(`${key}: not an English key`);
    else if (tr === undefined || tr.trim() === '') problems.push(`${key}: empty`);
    else if (holes(en) !== holes(tr)) problems.push(`${key}: placeholders {${holes(tr)}} instead of {${holes(en)}}`);
  }
  return problems;
}

describe('translations', () => {
  const english = readJson('l10n/bundle.l10n.json') as l10nJsonFormat;

  it('a pseudo-translation of the bundle passes the check, a broken one does not', () => {
    const pseudo = getL10nPseudoLocalized(english);
    assert.notDeepEqual(pseudo, english);
    assert.deepEqual(translationProblems(english, pseudo as Record<string, unknown>), []);
    assert.deepEqual(translationProblems(english, { 'Stopped sharing {0}': 'Freigabe beendet', 'Nope': 'x' }), ['Stopped sharing {0}: placeholders {} instead of {0}', 'Nope: not an English key']);
  });

  // The languages a contributor added (package.nls.<lang>.json, l10n/bundle.l10n.<lang>.json).
  const added = [
    ...fs.readdirSync(REPO).filter((f) => /^package\.nls\.[\w-]+\.json$/.test(f)).map((f) => ({ file: f, english: nls })),
    ...fs.readdirSync(path.join(REPO, 'l10n')).filter((f) => /^bundle\.l10n\.[\w-]+\.json$/.test(f)).map((f) => ({ file: `l10n/${f}`, english })),
  ];
  for (const t of added) {
    it(`${t.file} translates English keys and keeps their placeholders`, () => {
      assert.deepEqual(translationProblems(t.english, readJson(t.file) as Record<string, unknown>), []);
    });
  }
});
