/**
 * The installed form of the `spareband` command: the production bundle
 * (`scripts/build.ts`, what `npm run build` writes to `dist/`) in a package layout
 * (`dist/` next to `node_modules/`) in a temporary folder, run as a user runs it, with
 * TypeScript stripping off so that nothing it loads can be TypeScript.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createPublicClient, http } from 'viem'
import { buildBundle, ENTRY_FILE } from '../scripts/build.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const NODE_FLAGS = ['--no-experimental-strip-types']
const COMMANDS = ['init', 'start', 'status', 'channels', 'earnings', 'settle', 'fleet', 'connect', 'offers', 'demo', 'devnet']

/** This process's environment without spareband's own variables, logging silenced. */
function cleanEnv (): NodeJS.ProcessEnv {
  return { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SPAREBAND_'))), SPAREBAND_LOG_LEVEL: 'silent' }
}

describe('production bundle', () => {
  let pkg: string
  let entry: string

  before(async () => {
    pkg = await mkdtemp(join(tmpdir(), 'spareband-pkg-'))
    await symlink(join(ROOT, 'node_modules'), join(pkg, 'node_modules'), 'dir')
    entry = await buildBundle(join(pkg, 'dist'))
  })

  after(async () => {
    if (pkg !== undefined) await rm(pkg, { recursive: true, force: true })
  })

  it('is what package.json installs as the spareband command', async () => {
    const manifest = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8'))
    assert.equal(manifest.bin.spareband, `./dist/${ENTRY_FILE}`)
    assert.ok((manifest.files as string[]).includes('dist'))
    assert.match(await readFile(entry, 'utf8'), /^#!\/usr\/bin\/env node\n/)
  })

  it('prints its help with every command', async () => {
    const { code, stdout } = await new Promise<{ code: number, stdout: string }>((resolve) => {
      execFile(process.execPath, [...NODE_FLAGS, entry, '--help'], { env: cleanEnv(), timeout: 15_000 }, (err, out) => {
        resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout: out })
      })
    })
    assert.equal(code, 0)
    for (const command of COMMANDS) assert.match(stdout, new RegExp(`^\\s+${command}\\b`, 'm'), `help lists ${command}`)
  })

  it('runs `devnet --json`: anvil answers with the contract deployed, and SIGTERM stops both', async () => {
    const child = spawn(process.execPath, [...NODE_FLAGS, entry, 'devnet', '--json'], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    try {
      let stderr = ''
      child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
      const info = await new Promise<{ rpcUrl: string, chainId: number, contract: `0x${string}` }>((resolve, reject) => {
        let out = ''
        const timer = setTimeout(() => reject(new Error(`no devnet JSON within 20 s; stderr: ${stderr}`)), 20_000)
        child.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString()
          try {
            resolve(JSON.parse(out))
            clearTimeout(timer)
          } catch {}
        })
        void exited.then((code) => { clearTimeout(timer); reject(new Error(`devnet exited with ${code}; stderr: ${stderr}`)) })
      })
      assert.match(info.rpcUrl, /^http:\/\/127\.0\.0\.1:\d+$/)
      assert.equal(info.chainId, 31337)
      const client = createPublicClient({ transport: http(info.rpcUrl, { retryCount: 0 }) })
      assert.equal(await client.getChainId(), 31337)
      const code = await client.getCode({ address: info.contract })
      assert.ok(code !== undefined && code.length > 2, 'SpareChannels has code')

      child.kill('SIGTERM')
      assert.equal(await exited, 0)
      await assert.rejects(client.getChainId(), 'anvil stopped with the command')
    } finally {
      if (child.exitCode === null && child.signalCode === null) {
        // SIGTERM lets the command stop anvil; SIGKILL only if it does not exit
        child.kill('SIGTERM')
        const killer = setTimeout(() => child.kill('SIGKILL'), 5_000)
        await exited
        clearTimeout(killer)
      }
    }
  })
})
