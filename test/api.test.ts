/**
 * The seller's control API against a real seller: devnet, LevelDB on disk, the
 * simulated adapter on `lo`, a real buyer relaying through it, real settlement.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createServer as createHttpServer, request, type Server } from 'node:http'
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createPublicClient, http } from 'viem'
import { startDevnet, type Devnet } from '../daemon/chain/devnet.ts'
import { ApiClient } from '../daemon/api/client.ts'
import { HttpService } from '../daemon/api/http.ts'
import { ensureApiToken, readApiToken } from '../daemon/api/token.ts'
import { amountForBytes } from '../protocol/pricing.ts'
import { openChannel, payVoucher, recordChannel, silentLogger } from './helpers/settlement-fixtures.ts'
import { connectBuyer, startSellerFixture, type BuyerFixture, type SellerFixture } from './helpers/seller-fixture.ts'

/** One HTTP exchange with full control over the headers (fetch will not send a foreign Host). */
async function call (base: string, method: string, path: string, options: { headers?: Record<string, string>, body?: string | Buffer } = {}): Promise<{ status: number, headers: Record<string, string | string[] | undefined>, text: string, json: any }> {
  const url = new URL(path, base)
  return await new Promise((resolve, reject) => {
    const req = request(url, { method, headers: options.headers, timeout: 20_000 }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        let json: unknown
        try { json = JSON.parse(text) } catch { json = undefined }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json })
      })
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error('request timed out')))
    req.on('error', reject)
    req.end(options.body)
  })
}

/** Prometheus text format → `name{labels}` → value; checks every sample has HELP and TYPE. */
function parseMetrics (text: string): Map<string, number> {
  const typed = new Set<string>()
  const helped = new Set<string>()
  const samples = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '') continue
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line)
    if (meta !== null) {
      ;(meta[1] === 'HELP' ? helped : typed).add(meta[2])
      continue
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line)
    assert.ok(sample !== null, `malformed metrics line: ${line}`)
    const family = sample[1].replace(/_(bucket|sum|count|total|created)$/, '')
    assert.ok(typed.has(sample[1]) || typed.has(family), `no TYPE for ${sample[1]}`)
    assert.ok(helped.has(sample[1]) || helped.has(family), `no HELP for ${sample[1]}`)
    // the exposition format allows NaN and ±Inf (Prometheus parses them case-insensitively);
    // prom-client writes `Nan` for a gauge with no sample yet (event-loop lag on a first scrape)
    const isNaNToken = /^nan$/i.test(sample[3])
    const value = isNaNToken ? Number.NaN : Number(sample[3].replace(/^([+-]?)inf$/i, '$1Infinity'))
    assert.ok(isNaNToken || !Number.isNaN(value), `not a number: ${line}`)
    samples.set(sample[1] + (sample[2] ?? ''), value)
  }
  return samples
}

const NATIVE = '0x0000000000000000000000000000000000000000'

describe('control API (real seller on a devnet)', () => {
  let devnet: Devnet
  let fx: SellerFixture
  let buyer: BuyerFixture | undefined

  before(async () => {
    devnet = await startDevnet()
    fx = await startSellerFixture({ devnet, layer: { metricsListen: '127.0.0.1:0' } })
  })

  after(async () => {
    await buyer?.stop()
    await fx?.stop()
    await devnet?.stop()
  })

  it('answers GET /api/status with the seller status, bigints as decimal strings', async () => {
    const res = await call(fx.apiUrl, 'GET', '/api/status')
    assert.equal(res.status, 200)
    assert.match(String(res.headers['content-type']), /^application\/json/)
    assert.equal(res.headers['cache-control'], 'no-store')
    const status = res.json
    assert.equal(status.peerId, fx.seller.node.peerId.toString())
    assert.equal(status.payout, fx.payout)
    assert.equal(status.chainId, devnet.chainId)
    assert.ok(status.spareUplinkBps > 0, 'the configured capacity on lo gives spare uplink')
    assert.equal(status.sharing, 'available')
    assert.deepEqual(status.sessions, [])
    assert.equal(status.lastSettlement, null)
    const earnings = (await call(fx.apiUrl, 'GET', '/api/earnings')).json
    assert.deepEqual(earnings.tokens, [{ token: NATIVE, settled: '0', owed: '0', unpaidLive: '0', channels: 0 }])
  })

  it('settles on POST /api/settle with the token: the payout address receives the voucher amount', async () => {
    const ch = await openChannel(devnet, 3, fx.payout, 10n ** 17n)
    await recordChannel(fx.seller.store, devnet, ch)
    await payVoucher(fx.seller.store, devnet, ch, 10n ** 16n)

    const channels = (await call(fx.apiUrl, 'GET', '/api/channels')).json
    assert.equal(channels.total, 1)
    assert.equal(channels.channels[0].channelId, ch.channelId.toLowerCase())
    assert.equal(channels.channels[0].voucher.cumulativeAmount, '10000000000000000')
    assert.equal(channels.channels[0].deposit, '100000000000000000')
    assert.equal(channels.channels[0].owed, '10000000000000000')

    const client = createPublicClient({ chain: devnet.chain, transport: http(devnet.rpcUrl) })
    assert.equal(await client.getBalance({ address: fx.payout }), 0n)
    const res = await call(fx.apiUrl, 'POST', '/api/settle', { headers: { Authorization: `Bearer ${fx.token}`, 'Content-Type': 'application/json' }, body: '{}' })
    assert.equal(res.status, 200, res.text)
    assert.equal(res.json.batches.length, 1)
    const batch = res.json.batches[0]
    assert.equal(batch.status, 'success')
    assert.deepEqual(batch.paid, [{ token: NATIVE, amount: '10000000000000000' }])
    assert.ok(BigInt(batch.gasUsed) > 0n)
    assert.equal(await client.getBalance({ address: fx.payout }), 10n ** 16n, 'the chain paid the payout address')

    const earnings = (await call(fx.apiUrl, 'GET', '/api/earnings')).json
    assert.equal(earnings.tokens[0].settled, '10000000000000000')
    assert.equal(earnings.tokens[0].owed, '0')
    assert.equal(earnings.batchCount, 1)
    assert.equal(earnings.batches[0].txHash, batch.txHash)
    assert.equal(BigInt(earnings.gasSpent), BigInt(batch.gasCost))
    assert.equal((await call(fx.apiUrl, 'GET', '/api/status')).json.lastSettlement.txHash, batch.txHash)

    const again = await call(fx.apiUrl, 'POST', '/api/settle', { headers: { Authorization: `Bearer ${fx.token}` } })
    assert.equal(again.status, 200)
    assert.deepEqual(again.json.batches, [], 'nothing is owed any more: a second settle sends nothing')

    const metrics = parseMetrics((await call(fx.apiUrl, 'GET', '/metrics')).text)
    assert.equal(metrics.get(`spareband_settled_total{token="${NATIVE}"}`), 1e16)
    assert.equal(metrics.get('spareband_settlement_batches_total{status="success"}'), 1)
    assert.equal(metrics.get('spareband_settlement_gas_used_total'), Number(batch.gasUsed))
    assert.ok((metrics.get('spareband_settlement_last_timestamp_seconds') ?? 0) > 0)
  })

  it('shows a live buyer session with its relayed bytes in status, sessions, channels and metrics', async () => {
    buyer = await connectBuyer(devnet, fx, 2)
    const size = 3 * 1024 * 1024
    assert.equal(await buyer.download(size), size)

    const status = (await call(fx.apiUrl, 'GET', '/api/status')).json
    assert.equal(status.sessions.length, 1)
    const session = status.sessions[0]
    assert.equal(session.channelId.toLowerCase(), buyer.channelId.toLowerCase())
    assert.equal(session.token, NATIVE)
    assert.ok(BigInt(session.deliveredBytes) >= BigInt(size), `relayed ${session.deliveredBytes}`)
    assert.ok(BigInt(session.paidAmount) > 0n, 'vouchers were accepted during the download')

    const sessions = (await call(fx.apiUrl, 'GET', '/api/sessions')).json
    assert.equal(sessions.live.length, 1)
    assert.equal(sessions.live[0].id, session.id)
    const channels = (await call(fx.apiUrl, 'GET', '/api/channels')).json
    const live = channels.channels.find((c: any) => c.channelId === buyer!.channelId.toLowerCase())
    assert.equal(live.session.id, session.id)

    const metrics = parseMetrics((await call(fx.apiUrl, 'GET', '/metrics')).text)
    assert.equal(metrics.get('spareband_sessions_active'), 1)
    assert.equal(metrics.get('spareband_channels'), 2)
    assert.ok((metrics.get('spareband_relayed_bytes_total{direction="down"}') ?? 0) >= size, 'the download counts as relayed bytes towards the buyer')
    assert.ok((metrics.get('spareband_vouchers_total{outcome="accepted"}') ?? 0) >= 1, 'accepted vouchers are counted')
    const window = amountForBytes(BigInt(fx.config.seller.creditWindowBytes), BigInt(fx.config.seller.prices[0].pricePerGiB))
    const maxExposure = metrics.get(`spareband_unpaid_exposure_max{token="${NATIVE}"}`)
    assert.ok(maxExposure !== undefined && maxExposure <= Number(window), `exposure ${maxExposure} within one window ${window}`)
    assert.ok((metrics.get('spareband_spare_uplink_bps') ?? 0) > 0)
    assert.equal(metrics.get('spareband_sharing{reason="available"}'), 1)
    assert.ok(metrics.has('process_resident_memory_bytes'), 'process metrics are exported too')
  })

  it('refuses POST /api/settle without the right token', async () => {
    const none = await call(fx.apiUrl, 'POST', '/api/settle')
    assert.equal(none.status, 401)
    assert.equal(none.json.code, 'ERR_API_UNAUTHORIZED')
    const wrong = await call(fx.apiUrl, 'POST', '/api/settle', { headers: { Authorization: `Bearer ${'0'.repeat(64)}` } })
    assert.equal(wrong.status, 401)
    const basic = await call(fx.apiUrl, 'POST', '/api/settle', { headers: { Authorization: `Basic ${fx.token}` } })
    assert.equal(basic.status, 401)
  })

  it('refuses requests addressed to a name other than loopback (DNS rebinding)', async () => {
    const port = new URL(fx.apiUrl).port
    const evil = await call(fx.apiUrl, 'GET', '/api/status', { headers: { Host: `evil.example:${port}` } })
    assert.equal(evil.status, 403)
    assert.equal(evil.json.code, 'ERR_API_HOST')
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`]) {
      assert.equal((await call(fx.apiUrl, 'GET', '/api/status', { headers: { Host: host } })).status, 200, host)
    }
  })

  it('answers bad requests with JSON errors and bounded bodies', async () => {
    const auth = { Authorization: `Bearer ${fx.token}`, 'Content-Type': 'application/json' }
    const cases: Array<[string, string, { headers?: Record<string, string>, body?: string | Buffer }, number, string]> = [
      ['GET', '/api/nothing', {}, 404, 'ERR_NOT_FOUND'],
      ['DELETE', '/api/status', {}, 405, 'ERR_METHOD_NOT_ALLOWED'],
      ['GET', '/api/settle', {}, 405, 'ERR_METHOD_NOT_ALLOWED'],
      ['GET', '/api/channels?limit=0', {}, 400, 'ERR_API_BAD_REQUEST'],
      ['GET', '/api/earnings?batches=abc', {}, 400, 'ERR_API_BAD_REQUEST'],
      ['POST', '/api/settle', { headers: auth, body: '{not json' }, 400, 'ERR_API_BAD_REQUEST'],
      ['POST', '/api/settle', { headers: auth, body: '{"ignoreGasCap":"yes"}' }, 400, 'ERR_API_BAD_REQUEST'],
      ['POST', '/api/settle', { headers: auth, body: '{"drop":"tables"}' }, 400, 'ERR_API_BAD_REQUEST'],
      ['POST', '/api/settle', { headers: { ...auth, 'Content-Type': 'text/plain' }, body: '{}' }, 415, 'ERR_API_BAD_REQUEST'],
      ['POST', '/api/settle', { headers: auth, body: Buffer.alloc(64 * 1024, 0x20) }, 413, 'ERR_API_BODY_TOO_LARGE']
    ]
    for (const [method, path, options, status, code] of cases) {
      const res = await call(fx.apiUrl, method, path, options)
      assert.equal(res.status, status, `${method} ${path}: ${res.text}`)
      assert.equal(res.json.code, code, `${method} ${path}`)
      assert.equal(typeof res.json.message, 'string')
    }
  })

  it('serves only /metrics on the metrics listener', async () => {
    const url = fx.seller.metricsUrl
    assert.ok(url !== undefined)
    const metrics = await call(url, 'GET', '/metrics')
    assert.equal(metrics.status, 200)
    assert.match(String(metrics.headers['content-type']), /^text\/plain; version=0\.0\.4/)
    assert.ok(parseMetrics(metrics.text).has('spareband_sessions_active'))
    assert.equal((await call(url, 'GET', '/api/status')).status, 404)
    assert.equal((await call(url, 'GET', '/')).status, 404)
  })

  it('serves a self-contained dashboard page under a strict CSP', async () => {
    const page = await call(fx.apiUrl, 'GET', '/')
    assert.equal(page.status, 200)
    assert.match(String(page.headers['content-type']), /^text\/html/)
    const csp = String(page.headers['content-security-policy'])
    assert.match(csp, /default-src 'none'/)
    assert.match(csp, /script-src 'sha256-[A-Za-z0-9+/=]+'/)
    assert.doesNotMatch(page.text, /<(script|link|img)[^>]+(src|href)="(https?:)?\/\//i, 'no external resources')
    assert.match(page.text, /\/api\/status/)
  })
})

describe('HTTP listener rules', () => {
  const route = { method: 'GET' as const, path: '/x', access: 'read' as const, handler: async () => ({ kind: 'json' as const, body: {} }) }

  it('refuses a non-loopback bind unless allowRemote is set', () => {
    for (const listen of ['0.0.0.0:0', '[::]:0', '192.0.2.1:8742', 'example.com:8742']) {
      assert.throws(() => new HttpService({ name: 'control API', listenField: 'apiListen', listen, allowRemote: false, routes: [route], logger: silentLogger }), { code: 'ERR_API_NOT_LOOPBACK' }, listen)
    }
    assert.doesNotThrow(() => new HttpService({ name: 'control API', listenField: 'apiListen', listen: '0.0.0.0:0', allowRemote: true, routes: [route], logger: silentLogger }))
    for (const listen of ['127.0.0.1:0', '127.5.5.5:0', '[::1]:0', 'localhost:0']) {
      assert.doesNotThrow(() => new HttpService({ name: 'control API', listenField: 'apiListen', listen, allowRemote: false, routes: [route], logger: silentLogger }), listen)
    }
  })

  it('answers 504 when a handler takes longer than its limit, and stays up', async () => {
    let release: () => void = () => {}
    const slow = { ...route, path: '/slow', timeoutMs: 100, handler: async () => { await new Promise<void>((resolve) => { release = resolve }); return { kind: 'json' as const, body: {} } } }
    const service = new HttpService({ name: 'test', listenField: 'apiListen', listen: '127.0.0.1:0', allowRemote: false, routes: [slow, route], logger: silentLogger })
    await service.start()
    try {
      const res = await call(service.url, 'GET', '/slow')
      assert.equal(res.status, 504)
      assert.equal(res.json.code, 'ERR_API_TIMEOUT')
      assert.equal((await call(service.url, 'GET', '/x')).status, 200)
    } finally {
      release()
      await service.stop()
    }
  })

  it('reports a port in use as ERR_API_LISTEN', async () => {
    const blocker = createServer()
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
    const port = (blocker.address() as { port: number }).port
    try {
      const service = new HttpService({ name: 'control API', listenField: 'apiListen', listen: `127.0.0.1:${port}`, allowRemote: false, routes: [route], logger: silentLogger })
      await assert.rejects(service.start(), (err: any) => err.code === 'ERR_API_LISTEN' && /in use/.test(err.message))
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()))
    }
  })
})

describe('API token file', () => {
  it('is created with mode 0600, kept across starts, and refused when others can read it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'spareband-token-'))
    try {
      const first = await ensureApiToken(dir)
      assert.match(first, /^[0-9a-f]{64}$/)
      const path = join(dir, 'api-token')
      assert.equal((await stat(path)).mode & 0o777, 0o600)
      assert.equal(await ensureApiToken(dir), first, 'the token survives a restart')
      assert.equal((await readFile(path, 'utf8')).trim(), first)
      await chmod(path, 0o644)
      await assert.rejects(readApiToken(path), { code: 'ERR_API_TOKEN' })
      await chmod(path, 0o600)
      await writeFile(path, 'short\n')
      await assert.rejects(ensureApiToken(dir), { code: 'ERR_API_TOKEN' })
      await assert.rejects(readApiToken(join(dir, 'missing')), (err: any) => err.code === 'ERR_API_TOKEN' && /spareband start/.test(err.message))
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('API client (the CLI side)', () => {
  let server: Server
  let base: string

  before(async () => {
    server = createHttpServer((req, res) => {
      if (req.url === '/big') {
        res.writeHead(200, { 'Content-Type': 'application/json' })
        res.end(JSON.stringify({ filler: 'x'.repeat(256 * 1024) }))
      } else if (req.url === '/error') {
        res.writeHead(409, { 'Content-Type': 'application/json' })
        res.end(JSON.stringify({ code: 'ERR_SOMETHING', message: 'do this instead' }))
      }
      // any other path never answers
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}/`
  })

  after(async () => {
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })

  it('refuses an answer larger than its limit', async () => {
    await assert.rejects(new ApiClient({ url: base, maxResponseBytes: 64 * 1024 }).get('/big'), { code: 'ERR_API_RESPONSE_TOO_LARGE' })
    assert.equal(typeof (await new ApiClient({ url: base }).get<{ filler: string }>('/big')).filler, 'string')
  })

  it('gives up after its time limit with ERR_DAEMON_UNREACHABLE', async () => {
    const started = Date.now()
    await assert.rejects(new ApiClient({ url: base, timeoutMs: 300 }).get('/hang'), (err: any) => err.code === 'ERR_DAEMON_UNREACHABLE' && /no answer within/.test(err.message))
    assert.ok(Date.now() - started < 5000)
  })

  it('keeps the daemon\'s error code and message', async () => {
    await assert.rejects(new ApiClient({ url: base }).get('/error'), { code: 'ERR_SOMETHING', message: 'do this instead', status: 409 })
  })
})
