/**
 * The chain client's JSON-RPC transport on node:http, against a real anvil, through a
 * loopback relay that counts the HTTP requests (to see the batching) and, for the error
 * cases, a loopback server that answers badly. Errors must be viem's own classes, as
 * with viem's fetch-based transport.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createPublicClient, HttpRequestError, MethodNotFoundRpcError, TimeoutError } from 'viem'
import { startDevnet, type Devnet } from '../daemon/chain/devnet.ts'
import { nodeHttp } from '../daemon/chain/node-http-transport.ts'

/** A loopback HTTP server running `handle`; resolves with its URL. */
async function serve (handle: (req: IncomingMessage, body: string, res: ServerResponse) => void): Promise<{ url: string, server: Server }> {
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (chunk: Buffer) => { body += chunk.toString() })
    req.on('end', () => handle(req, body, res))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, server }
}

async function close (server: Server | undefined): Promise<void> {
  if (server === undefined) return
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
}

describe('nodeHttp transport', () => {
  let devnet: Devnet
  let relay: { url: string, server: Server }
  /** Bodies of the HTTP requests the relay forwarded to anvil. */
  const seen: unknown[] = []
  const servers: Server[] = []

  before(async () => {
    devnet = await startDevnet({ accounts: 1 })
    const target = new URL(devnet.rpcUrl)
    relay = await serve((req, body, res) => {
      seen.push(JSON.parse(body))
      const upstream = httpRequest({ hostname: target.hostname, port: target.port, method: 'POST', path: '/', headers: { 'content-type': 'application/json' } }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, { 'content-type': answer.headers['content-type'] ?? 'application/json' })
        answer.pipe(res)
      })
      upstream.end(body)
    })
    servers.push(relay.server)
  })

  after(async () => {
    for (const server of servers) await close(server)
    await devnet?.stop()
  })

  it('reads the chain, and sends the requests of one tick as one JSON-RPC batch', async () => {
    const client = createPublicClient({ chain: devnet.chain, transport: nodeHttp(relay.url, { retryCount: 0 }) })
    assert.equal(await client.getChainId(), devnet.chainId)
    seen.length = 0
    const [code, balance, block] = await Promise.all([
      client.getCode({ address: devnet.contract }),
      client.getBalance({ address: devnet.contract }),
      client.getBlockNumber({ cacheTime: 0 })
    ])
    assert.ok(code !== undefined && code.length > 2)
    assert.equal(balance, 0n)
    assert.equal(typeof block, 'bigint')
    assert.equal(seen.length, 1, 'one HTTP request')
    assert.ok(Array.isArray(seen[0]) && seen[0].length === 3, 'carrying the three calls')
  })

  it('maps a JSON-RPC error to viem\'s error class for its code', async () => {
    const client = createPublicClient({ transport: nodeHttp(relay.url, { retryCount: 0 }) })
    await assert.rejects(client.request({ method: 'spareband_noSuchMethod' as any }), (err) => err instanceof MethodNotFoundRpcError)
  })

  it('fails with HttpRequestError on a non-JSON error status, after viem\'s retries', async () => {
    let hits = 0
    const broken = await serve((_req, _body, res) => {
      hits++
      res.writeHead(503, { 'content-type': 'text/plain' }).end('down for maintenance')
    })
    servers.push(broken.server)
    const client = createPublicClient({ transport: nodeHttp(broken.url, { retryCount: 1 }) })
    await assert.rejects(client.getChainId(), (err) => {
      assert.ok(err instanceof HttpRequestError)
      assert.equal(err.status, 503)
      assert.match(err.details, /down for maintenance/)
      return true
    })
    assert.equal(hits, 2, 'a 503 is retried')
  })

  it('gives up with TimeoutError when the server does not answer in time, or stalls in the body', async () => {
    const silent = await serve(() => {})
    const stalling = await serve((_req, _body, res) => { res.writeHead(200, { 'content-type': 'application/json' }).write('{"jsonrpc":"2.0",') })
    servers.push(silent.server, stalling.server)
    for (const { url } of [silent, stalling]) {
      const client = createPublicClient({ transport: nodeHttp(url, { retryCount: 0, timeoutMs: 300 }) })
      const started = Date.now()
      await assert.rejects(client.getChainId(), (err) => err instanceof TimeoutError)
      assert.ok(Date.now() - started < 5_000)
    }
  })

  it('refuses a response above the size limit, and sends URL credentials as basic auth', async () => {
    let authorization: string | undefined
    const big = await serve((req, _body, res) => {
      authorization = req.headers.authorization
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: 1, result: 'x'.repeat(4096) }))
    })
    servers.push(big.server)
    const url = big.url.replace('http://', 'http://rpc-user:s%40cret@')
    const client = createPublicClient({ transport: nodeHttp(url, { retryCount: 0, maxResponseBytes: 1024 }) })
    await assert.rejects(client.getChainId(), (err) => err instanceof HttpRequestError && !String(err.message).includes('s%40cret'))
    assert.equal(authorization, `Basic ${Buffer.from('rpc-user:s@cret').toString('base64')}`)
  })
})
