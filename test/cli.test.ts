/**
 * The operator CLI as a user runs it: `spareband init`, then `status`, `channels`,
 * `earnings`, `settle --now` and `fleet` as child processes (Node 24) against a
 * real seller started from the configuration `init` wrote.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createPublicClient, http } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { startDevnet, type Devnet } from '../daemon/chain/devnet.ts'
import { openChannel, payVoucher, recordChannel } from './helpers/settlement-fixtures.ts'
import { startSellerFixture, type SellerFixture } from './helpers/seller-fixture.ts'
import { mapBounded } from '../daemon/cli/commands/fleet.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const CLI = join(ROOT, 'daemon/bin/spareband.ts')

/** Runs the CLI with Node 24 and a clean SPAREBAND_* environment. */
async function cli (args: string[], timeoutMs = 60_000): Promise<{ code: number, stdout: string, stderr: string }> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SPAREBAND_')))
  return await new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...env, SPAREBAND_LOG_LEVEL: 'silent' }, timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr })
    })
  })
}

/** A loopback port nothing listens on. */
async function closedPort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

describe('spareband CLI (child processes against a real seller)', () => {
  let devnet: Devnet
  let dir: string
  let fx: SellerFixture | undefined
  const payout = privateKeyToAccount(generatePrivateKey()).address

  before(async () => {
    devnet = await startDevnet()
    dir = await mkdtemp(join(tmpdir(), 'spareband-cli-'))
  })

  after(async () => {
    await fx?.stop()
    await devnet?.stop()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('init writes a 0600 config and key file, prints the hot key and peer id, and never overwrites', async () => {
    const configPath = join(dir, 'etc', 'config.json')
    const dataDir = join(dir, 'data')
    const args = ['init', '--config', configPath, '--data-dir', dataDir, '--payout', payout, '--rpc-url', devnet.rpcUrl, '--chain-id', String(devnet.chainId), '--contract', devnet.contract]
    const res = await cli([...args, '--json'])
    assert.equal(res.code, 0, res.stderr)
    const out = JSON.parse(res.stdout)
    assert.equal(out.config, configPath)
    assert.equal(out.payout, payout)
    assert.match(out.peerId, /^12D3Koo/)
    assert.notEqual(out.hotAddress, payout, 'the hot key is not the payout address')
    assert.equal((await stat(configPath)).mode & 0o777, 0o600)
    assert.equal((await stat(join(dataDir, 'keys.json'))).mode & 0o777, 0o600)
    const config = JSON.parse(await readFile(configPath, 'utf8'))
    assert.equal(config.dataDir, dataDir)
    assert.equal(config.seller.payoutAddress, payout)
    assert.equal(config.chain.contract, devnet.contract)
    assert.equal(config.apiListen, '127.0.0.1:8742')
    const keys = JSON.parse(await readFile(join(dataDir, 'keys.json'), 'utf8'))
    assert.equal(privateKeyToAccount(keys.hotKey).address, out.hotAddress)

    const again = await cli(args)
    assert.equal(again.code, 1)
    assert.match(again.stderr, /ERR_CONFIG: .*exists already/)
    assert.equal(await readFile(join(dataDir, 'keys.json'), 'utf8'), JSON.stringify(keys, null, 2) + '\n', 'the keys were not replaced')

    const human = await cli(['init', '--config', join(dir, 'other.json'), '--data-dir', join(dir, 'other'), '--rpc-url', devnet.rpcUrl, '--chain-id', String(devnet.chainId), '--contract', devnet.contract])
    assert.equal(human.code, 0, human.stderr)
    assert.match(human.stdout, /hot key\s+0x[0-9a-fA-F]{40}\s+<- send a little native coin here/)
    assert.match(human.stdout, /pass --payout/)

    const missing = await cli(['init', '--config', join(dir, 'x.json'), '--data-dir', join(dir, 'x'), '--rpc-url', devnet.rpcUrl])
    assert.equal(missing.code, 1)
    assert.match(missing.stderr, /ERR_CONFIG: init needs the chain: pass --chain-id, --contract/)
    const badPayout = await cli(['init', '--config', join(dir, 'y.json'), '--data-dir', join(dir, 'y'), '--payout', '0x123', '--rpc-url', devnet.rpcUrl, '--chain-id', '1', '--contract', devnet.contract])
    assert.equal(badPayout.code, 1)
    assert.match(badPayout.stderr, /--payout 0x123 is not an EVM address/)
  })

  it('status talks to the running seller started from that config', async () => {
    fx = await startSellerFixture({ devnet, configFile: join(dir, 'etc', 'config.json') })
    const res = await cli(['status', '--json', '--api', fx.apiUrl])
    assert.equal(res.code, 0, res.stderr)
    const status = JSON.parse(res.stdout)
    assert.equal(status.peerId, fx.seller.node.peerId.toString())
    assert.equal(status.payout, payout)
    assert.equal(status.sharing, 'available')

    const table = await cli(['status', '--api', fx.apiUrl])
    assert.equal(table.code, 0, table.stderr)
    assert.match(table.stdout, new RegExp(`spareband seller ${status.peerId}`))
    assert.match(table.stdout, /sharing\s+yes, [0-9.]+ Mbit\/s spare/)
    assert.match(table.stdout, /settled\s+never yet/)
  })

  it('settle --now reads the token from the data directory and pays the payout address; channels and earnings show it', async () => {
    assert.ok(fx !== undefined)
    const ch = await openChannel(devnet, 4, payout, 10n ** 17n)
    await recordChannel(fx.seller.store, devnet, ch)
    await payVoucher(fx.seller.store, devnet, ch, 2n * 10n ** 16n)

    const channels = await cli(['channels', '--api', fx.apiUrl])
    assert.equal(channels.code, 0, channels.stderr)
    assert.match(channels.stdout, /CHANNEL\s+TOKEN\s+DEPOSIT/)
    assert.match(channels.stdout, /native coin\s+0\.1\s+0\.02\s/)

    const preview = await cli(['settle', '--api', fx.apiUrl])
    assert.equal(preview.code, 0, preview.stderr)
    assert.match(preview.stdout, /Owed: 0\.02 native coin/)

    const noToken = await cli(['settle', '--now', '--api', fx.apiUrl, '--data-dir', join(dir, 'nowhere')])
    assert.equal(noToken.code, 1)
    assert.match(noToken.stderr, /ERR_API_TOKEN: no API token at/)

    const res = await cli(['settle', '--now', '--json', '--api', fx.apiUrl, '--config', join(dir, 'etc', 'config.json')])
    assert.equal(res.code, 0, res.stderr)
    const result = JSON.parse(res.stdout)
    assert.equal(result.batches.length, 1)
    assert.equal(result.batches[0].status, 'success')
    const client = createPublicClient({ chain: devnet.chain, transport: http(devnet.rpcUrl) })
    assert.equal(await client.getBalance({ address: payout }), 2n * 10n ** 16n)

    const earnings = await cli(['earnings', '--api', fx.apiUrl])
    assert.equal(earnings.code, 0, earnings.stderr)
    assert.match(earnings.stdout, /native coin\s+0\.02\s+0\s/)
    assert.ok(earnings.stdout.includes(result.batches[0].txHash))
    const nothing = await cli(['settle', '--now', '--api', fx.apiUrl, '--data-dir', fx.dataDir])
    assert.equal(nothing.code, 0, nothing.stderr)
    assert.match(nothing.stdout, /Nothing to settle/)
  })

  it('says how to start the daemon when none answers', async () => {
    const url = `http://127.0.0.1:${await closedPort()}`
    for (const command of ['status', 'earnings']) {
      const res = await cli([command, '--api', url])
      assert.equal(res.code, 1, command)
      assert.match(res.stderr, /ERR_DAEMON_UNREACHABLE: no spareband daemon answers at .*start it with `spareband start`/, command)
      assert.equal(res.stdout, '')
    }
  })

  it('fleet prints one row per node, including the ones that fail, within its time limit', async () => {
    assert.ok(fx !== undefined)
    const dead = `127.0.0.1:${await closedPort()}`
    const res = await cli(['fleet', '--nodes', fx.apiUrl, dead, '--json', '--timeout', '3000'])
    assert.equal(res.code, 1, 'a node that does not answer makes the exit status 1')
    const rows = JSON.parse(res.stdout)
    assert.equal(rows.length, 2)
    assert.equal(rows[0].ok, true)
    assert.equal(rows[0].peerId, fx.seller.node.peerId.toString())
    assert.equal(rows[0].lastSettlement.txHash.length, 66)
    assert.deepEqual(rows[0].owed, [])
    assert.equal(rows[1].ok, false)
    assert.equal(rows[1].node, `http://${dead}/`)
    assert.equal(rows[1].error.code, 'ERR_DAEMON_UNREACHABLE')

    const table = await cli(['fleet', '--nodes', fx.apiUrl, dead])
    assert.match(table.stdout, /NODE\s+PEER\s+SPARE\s+SESSIONS\s+OWED\s+LAST SETTLEMENT\s+ERROR/)
    assert.match(table.stdout, /1 of 2 node\(s\) answered/)
    const none = await cli(['fleet'])
    assert.equal(none.code, 1)
    assert.match(none.stderr, /ERR_FLEET_INPUT: no nodes given/)
  })
})

describe('fleet fan-out', () => {
  it('never has more than its concurrency in flight and keeps the input order', async () => {
    let inFlight = 0
    let peak = 0
    const out = await mapBounded(Array.from({ length: 25 }, (_, i) => i), 4, async (i) => {
      inFlight++
      peak = Math.max(peak, inFlight)
      await new Promise((resolve) => setTimeout(resolve, 2 + (i % 3)))
      inFlight--
      return i * 2
    })
    assert.equal(peak, 4)
    assert.deepEqual(out, Array.from({ length: 25 }, (_, i) => i * 2))
  })
})
