/**
 * Builds the installed form of the `spareband` command: a minified ESM bundle split at
 * the CLI's dynamic imports, `dist/spareband.mjs` plus `dist/chunk-*.mjs`, with source
 * maps (mappings only; run with `NODE_OPTIONS=--enable-source-maps` to see TypeScript
 * positions in stack traces).
 *
 *   npm run build                  # this, then tsc for the `spareband/protocol` library (dist/protocol/)
 *   node scripts/build.ts OUTDIR   # writes the bundle elsewhere (tests)
 *
 * Why a bundle: on small devices one pre-built file set loads faster than ~1,500 modules
 * and needs no TypeScript stripping at run time. Why split: a command loads only its own
 * code, and V8 parses each chunk on its own, so start-up never holds the syntax tree of
 * the whole program at once (a single 3 MB module needs a ~14 MB parse zone, whose
 * freed pages glibc keeps: about 11 MB of a seller's idle resident memory).
 *
 * Packages that must stay files on disk are left out of the bundle and resolved from
 * `node_modules` at run time: native addons (`classic-level`, `secp256k1` loaded through
 * `node-gyp-build`), pino (its transports run `pino-pretty` in a worker thread by file
 * name) and anvil (a binary found through its platform package).
 */
import { chmod, readdir, rm } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build, type Plugin } from 'esbuild'

/** Root of the repository (the folder holding package.json). */
const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')

/** Where `npm run build` writes the bundle. */
export const DEFAULT_OUTDIR = join(REPO_ROOT, 'dist')

/** The command's entry file inside the output folder; `package.json` `bin` points here. */
export const ENTRY_FILE = 'spareband.mjs'

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

/** The files of an earlier bundle in an output folder (the entry, its chunks, their maps). */
const BUNDLE_FILE = /^(spareband|chunk-[A-Z0-9]+)\.mjs(\.map)?$/

/**
 * libp2p's peer store locks with `mortice`, whose Node implementation coordinates locks
 * across cluster workers and worker threads: it loads `node:cluster` and
 * `node:worker_threads` and opens a `BroadcastChannel`, which pulls in Node's bundled
 * undici (for `MessageEvent`). The daemon is one process and no worker touches its peer
 * store, so it takes mortice's own single-process implementation (the one mortice ships
 * for React Native). The build fails if mortice's layout no longer matches.
 */
function singleProcessMortice (): Plugin {
  return {
    name: 'single-process-mortice',
    setup (b) {
      let replaced = false
      b.onResolve({ filter: /^\.\/node\.js$/ }, (args) => {
        if (!/[\\/]node_modules[\\/]mortice[\\/]dist[\\/]src[\\/]mortice\.js$/.test(args.importer)) return undefined
        replaced = true
        return { path: join(dirname(args.importer), 'react-native.js') }
      })
      b.onEnd((result) => {
        if (result.errors.length === 0 && !replaced) {
          return { errors: [{ text: 'mortice no longer imports ./node.js from dist/src/mortice.js: review the single-process-mortice plugin in scripts/build.ts' }] }
        }
        return undefined
      })
    }
  }
}

/** Builds the bundle into `outdir`, replacing an earlier one; resolves with the path of the entry file. */
export async function buildBundle (outdir: string = DEFAULT_OUTDIR): Promise<string> {
  // only the bundle's own files go: `dist/protocol/` (the library, from tsc) stays
  const earlier = await readdir(outdir).catch(() => [])
  await Promise.all(earlier.filter((name) => BUNDLE_FILE.test(name)).map(async (name) => rm(join(outdir, name), { force: true })))
  await build({
    entryPoints: { spareband: join(REPO_ROOT, 'daemon/bin/spareband.ts') },
    outdir,
    outExtension: { '.js': '.mjs' },
    chunkNames: 'chunk-[hash]',
    bundle: true,
    splitting: true,
    platform: 'node',
    format: 'esm',
    target: 'node22',
    minify: true,
    sourcemap: 'linked',
    sourcesContent: false,
    legalComments: 'none',
    logLevel: 'warning',
    external: [...EXTERNAL_PACKAGES],
    plugins: [singleProcessMortice()],
    // bundled CommonJS packages call require() for Node's built-ins
    banner: { js: "import { createRequire as __sbCreateRequire } from 'node:module'; const require = __sbCreateRequire(import.meta.url);" }
  })
  const entry = join(outdir, ENTRY_FILE)
  await chmod(entry, 0o755)
  return entry
}

if (import.meta.main) {
  await buildBundle(process.argv[2] === undefined ? DEFAULT_OUTDIR : resolve(process.argv[2]))
}
