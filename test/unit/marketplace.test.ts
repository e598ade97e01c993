/**
 * Marketplace / Open VSX readiness: the VSIX ships only what runs (and what the listing shows),
 * the README's links still work once packaged, and the manifest has what a gallery page needs.
 * `vsce ls` reads the built files: `npm run test:unit` builds first (`node esbuild.mjs`).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';

const REPO = path.resolve(__dirname, '..', '..');
const manifest = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as {
  version: string;
  categories?: string[];
  galleryBanner?: { color?: string; theme?: string };
  repository?: { url?: string };
};
const readme = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8');

/** The Visual Studio Marketplace's categories (its manifest reference); Open VSX takes the same. */
const CATEGORIES = ['AI', 'Azure', 'Chat', 'Data Science', 'Debuggers', 'Extension Packs', 'Education', 'Formatters', 'Keymaps', 'Language Packs', 'Linters', 'Machine Learning', 'Notebooks', 'Programming Languages', 'SCM Providers', 'Snippets', 'Testing', 'Themes', 'Visualization', 'Other'];

/** What may ship: the bundles, the manifest and its translations, the listing's files, the icons and the Inspector page's assets. */
const SHIPS = [/^dist\/[\w-]+\.js$/, /^package\.json$/, /^package\.nls(\.[\w-]+)?\.json$/, /^l10n\/bundle\.l10n(\.[\w-]+)?\.json$/, /^(README|CHANGELOG)\.md$/, /^LICENSE$/, /^media\/[\w-]+\.(png|svg|js|css)$/, /^media\/walkthrough\/[\w-]+\.md$/];

function vsceLs(): string[] {
  assert.ok(fs.existsSync(path.join(REPO, 'dist', 'extension.js')), 'dist/extension.js is missing: run `node esbuild.mjs` (npm run test:unit does) before this test');
  const out = execFileSync(process.execPath, [path.join(REPO, 'node_modules', '@vscode', 'vsce', 'vsce'), 'ls', '--no-dependencies'], { cwd: REPO, encoding: 'utf8', timeout: 60_000 });
  return out.split('\n').map((l) => l.trim()).filter(Boolean);
}

/** Markdown links and images, as vsce finds them to rewrite (its README processor's pattern). */
function links(markdown: string): string[] {
  const withoutCode = markdown.replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '');
  return [...withoutCode.matchAll(/!?\[(?:[^\][]*|!\[[^\][]*]\([^)]+\))\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((m) => m[1] ?? '');
}

/** GitHub's (and the marketplace's) heading anchors. */
function anchors(markdown: string): Set<string> {
  const out = new Set<string>();
  const seen = new Map<string, number>();
  for (const m of markdown.replace(/```[\s\S]*?```/g, '').matchAll(/^#{1,6}\s+(.+)$/gm)) {
    const base = (m[1] ?? '').trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n ? `${base}-${n}` : base);
  }
  return out;
}

describe('marketplace readiness', () => {
  it('the VSIX ships only the bundles, the manifest, its translations, the listing files and the media', () => {
    const files = vsceLs();
    const extra = files.filter((f) => !SHIPS.some((re) => re.test(f)));
    assert.deepEqual(extra, [], 'these files would ship: exclude them in .vscodeignore (it allowlists what ships)');
    for (const needed of ['dist/extension.js', 'dist/cli.js', 'package.json', 'package.nls.json', 'l10n/bundle.l10n.json', 'README.md', 'CHANGELOG.md', 'LICENSE', 'media/icon.png', 'media/walkthrough/install.md']) {
      assert.ok(files.includes(needed), `${needed} is not in the VSIX: allow it in .vscodeignore`);
    }
    assert.ok(!files.some((f) => f.endsWith('.map')), 'no source maps ship');
  });

  it("the README's links work inside the VSIX: anchors exist, relative targets are in the repository (vsce makes them absolute), none leave it", () => {
    const repoUrl = manifest.repository?.url ?? '';
    assert.match(repoUrl, /github\.com\/[^/]+\/[^/]+/, 'vsce rewrites relative README links to the GitHub repository only when package.json names one');
    const heads = anchors(readme);
    const problems: string[] = [];
    for (const link of links(readme)) {
      if (/^(https?:|mailto:|command:)/.test(link)) continue;
      if (link.startsWith('#')) {
        if (!heads.has(link.slice(1))) problems.push(`${link}: no such heading`);
        continue;
      }
      const target = path.posix.normalize(link.split('#')[0] ?? '');
      if (target.startsWith('../') || path.isAbsolute(target)) problems.push(`${link}: outside the repository (broken in the VSIX and on the marketplace)`);
      else if (!fs.existsSync(path.join(REPO, target))) problems.push(`${link}: no such file in the repository`);
    }
    assert.deepEqual(problems, []);
    assert.ok(links(readme).length > 5, 'the link parser found the README links');
  });

  it('the link check finds broken links', () => {
    assert.deepEqual(links('see [the design](../elsewhere/DESIGN.md) and ![x](docs/a.png "t") but not `[code](x)`'), ['../elsewhere/DESIGN.md', 'docs/a.png']);
    assert.ok(anchors('## Performance (`npm run bench`)\n## Use\n## Use').has('performance-npm-run-bench'));
    assert.ok(anchors('## Use\n## Use').has('use-1'));
  });

  it('a gallery banner, marketplace categories, and a CHANGELOG entry for this version', () => {
    assert.match(manifest.galleryBanner?.color ?? '', /^#[0-9a-fA-F]{6}$/);
    assert.ok(manifest.galleryBanner?.theme === 'dark' || manifest.galleryBanner?.theme === 'light');
    assert.ok((manifest.categories ?? []).length > 0);
    for (const c of manifest.categories ?? []) assert.ok(CATEGORIES.includes(c), `"${c}" is not a marketplace category (${CATEGORIES.join(', ')})`);
    const changelog = fs.readFileSync(path.join(REPO, 'CHANGELOG.md'), 'utf8');
    assert.match(changelog, new RegExp(`^## ${manifest.version.replace(/\./g, '\\.')}\\b`, 'm'), `CHANGELOG.md has no "## ${manifest.version}" entry`);
  });
});
