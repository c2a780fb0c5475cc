/**
 * Builds the installed form of the `spareband` command: one minified ESM bundle,
 * `dist/spareband.mjs`, with its source map. Bundling matters on small devices: one
 * module instead of ~1,500 loads faster, and no TypeScript is stripped at run time.
 *
 *   npm run build                      # writes dist/spareband.mjs
 *   node scripts/build.ts OUTFILE      # writes the bundle elsewhere (tests, benchmarks)
 *
 * Packages that must stay files on disk are left out of the bundle and resolved from
 * `node_modules` at run time: native addons (`classic-level`, `secp256k1` loaded through
 * `node-gyp-build`), pino (its transports run `pino-pretty` in a worker thread by file
 * name) and anvil (a binary found through its platform package).
 */
import { chmod } from 'node:fs/promises'
import { build } from 'esbuild'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

/** Root of the repository (the folder holding package.json). */
const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')

/** Where `npm run build` writes the bundle; `package.json` `bin` points here. */
export const DEFAULT_OUTFILE = join(REPO_ROOT, 'dist', 'spareband.mjs')

/** Packages resolved from `node_modules` at run time instead of bundled. */
export const EXTERNAL_PACKAGES = [
  'classic-level',
  'secp256k1',
  'node-gyp-build',
  'pino',
  'pino-pretty',
  'thread-stream',
  '@foundry-rs/*'
] as const

/** Builds the CLI bundle (and `OUTFILE.map`) at `outfile`. */
export async function buildBundle (outfile: string = DEFAULT_OUTFILE): Promise<void> {
  await build({
    entryPoints: [join(REPO_ROOT, 'daemon/bin/spareband.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node22',
    minify: true,
    sourcemap: true,
    legalComments: 'none',
    logLevel: 'warning',
    external: [...EXTERNAL_PACKAGES],
    // bundled CommonJS packages call require() for Node's built-ins
    banner: { js: "import { createRequire as __sbCreateRequire } from 'node:module'; const require = __sbCreateRequire(import.meta.url);" }
  })
  await chmod(outfile, 0o755)
}

if (import.meta.main) {
  await buildBundle(process.argv[2] === undefined ? DEFAULT_OUTFILE : resolve(process.argv[2]))
}
