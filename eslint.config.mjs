import tseslint from 'typescript-eslint';

/** One `no-restricted-imports` block per room: the rooms (and the `vscode` module) it must not import. */
function rooms(table) {
  return Object.entries(table).map(([files, forbidden]) => ({
    files: [files],
    rules: {
      'no-restricted-imports': ['error', {
        ...(forbidden.includes('vscode') ? { paths: [{ name: 'vscode', message: "Only src/vscode/ and src/extension.ts may import 'vscode' (ARCHITECTURE.md: rooms)." }] } : {}),
        patterns: [{
          group: forbidden.flatMap((room) => [`**/${room}`, `**/${room}/**`, `./${room}`, `./${room}/**`]),
          message: `${files} may not import ${forbidden.join(', ')}: imports go only downward (ARCHITECTURE.md: rooms).`,
        }],
      }],
    },
  }));
}

export default tseslint.config(
  { ignores: ['dist/**', 'out/**', 'node_modules/**', '.vscode-test/**', 'test-results/**', '.e2e/**'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: { allowDefaultProject: ['*.mjs', 'test/fixtures/*.js', 'test/fixtures/*.cjs'] }, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': ['error', {
        // node:test's describe/it return promises the runner itself awaits.
        allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite', 'before', 'after', 'beforeEach', 'afterEach'] }],
      }],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  // The rooms (ARCHITECTURE.md): imports go only downward, extension/cli → vscode → mcp → bridge → core.
  // Checked by path, so `../vscode/config` from core fails as surely as `import 'vscode'`.
  ...rooms({
    'src/core/**': ['vscode', 'mcp', 'bridge', 'cli', 'extension', 'mcpModule'],
    'src/bridge/**': ['vscode', 'mcp', 'cli', 'extension', 'mcpModule'],
    'src/mcp/**': ['vscode', 'cli', 'extension', 'mcpModule'],
    'src/vscode/**': ['cli', 'extension'],
    'src/cli.ts': ['vscode', 'extension'],
    'src/cli/**': ['vscode', 'extension'],
  }),
  {
    files: ['test/fixtures/**/*.js', 'test/fixtures/**/*.cjs', '*.mjs'],
    ...tseslint.configs.disableTypeChecked,
  },
);
