import { randomBytes } from 'node:crypto'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { parseEther } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { startBuyer } from './daemon/buyer/start-buyer.ts'
import { startDevnet } from './daemon/chain/devnet.ts'
import { fundFromDevAccount, loadOrCreateKeys, localBuyerConfig, startLocalSeller, LOCAL_POLLING_MS } from './daemon/local-market.ts'
import { download, fileServer } from './test/helpers/market.ts'
import { socks5Connect, sha256 } from './test/helpers/relay-fixtures.ts'

const logger = pino({ level: process.env.LOG ?? 'warn' }, pino.destination(2))
const devnet = await startDevnet()
const dir = await mkdtemp(join(tmpdir(), 'sbdbg-'))
const payload = randomBytes(Number(process.env.MB ?? 50) * 1024 * 1024)
const server = await fileServer('127.0.0.2', payload)
const A = await startLocalSeller({ chain: devnet, dataDir: join(dir, 'a'), pricePerGiB: 10n ** 15n, payout: privateKeyToAccount(generatePrivateKey()).address, allowCidrs: ['127.0.0.2/32'], logger: logger.child({ s: 'A' }) })
const B = await startLocalSeller({ chain: devnet, dataDir: join(dir, 'b'), pricePerGiB: 2n * 10n ** 15n, payout: privateKeyToAccount(generatePrivateKey()).address, bootstrap: [A.node.getMultiaddrs()[0].toString()], allowCidrs: ['127.0.0.2/32'], logger: logger.child({ s: 'B' }) })
const keys = await loadOrCreateKeys(join(dir, 'buyer', 'keys.json'))
await fundFromDevAccount(devnet, keys.hot.address, parseEther('10'))
while (!B.node.services.advertiser.advertising) await new Promise((r) => setTimeout(r, 50))
await A.node.services.advertiser.refresh()
const b = await startBuyer({ config: localBuyerConfig({ chain: devnet, dataDir: join(dir, 'buyer'), bootstrap: [B.node.getMultiaddrs()[0].toString()] }), keys, logger: logger.child({ s: 'buyer' }), pollingIntervalMs: LOCAL_POLLING_MS })
console.log('seller', b.client.progress())
let t = performance.now()
try {
  const { body } = await download({ authority: 'x', tunnel: async () => (await socks5Connect(b.client.socksAddress!.port, '127.0.0.2', server.port)).socket })
  console.log('ok', body.length, sha256(body) === sha256(payload), performance.now() - t)
} catch (err) { console.log('fail', err, performance.now() - t) }
console.log(b.client.progress())
await b.stop(); await A.stop(); await B.stop(); await server.close(); await devnet.stop()
