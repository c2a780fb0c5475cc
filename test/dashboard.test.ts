/**
 * The web dashboard in a real headless Chromium (Debian's `chromium` package,
 * driven by playwright-core) against a real seller with a settled batch, an owed
 * voucher and a live buyer session: the page renders the data, loads nothing from
 * elsewhere, raises no error, and says so when the daemon goes away.
 * Skips only when /usr/bin/chromium is missing.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import { startDevnet, type Devnet } from '../daemon/chain/devnet.ts'
import { DASHBOARD_POLL_MS } from '../daemon/api/dashboard.ts'
import { openChannel, payVoucher, recordChannel } from './helpers/settlement-fixtures.ts'
import { connectBuyer, startSellerFixture, type BuyerFixture, type SellerFixture } from './helpers/seller-fixture.ts'

const CHROMIUM = '/usr/bin/chromium'
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
const missing = existsSync(CHROMIUM) ? false : `Chromium is not installed at ${CHROMIUM} (install the Debian package: apt-get install -y chromium)`

describe('web dashboard (headless Chromium, real seller)', { skip: missing }, () => {
  let devnet: Devnet
  let fx: SellerFixture
  let buyer: BuyerFixture | undefined
  let browser: Browser | undefined
  let page: Page
  let shots: string
  let settledTx: string
  const requests: string[] = []
  const problems: string[] = []

  before(async () => {
    devnet = await startDevnet()
    fx = await startSellerFixture({ devnet })
    shots = await mkdtemp(join(tmpdir(), 'spareband-dashboard-'))
    // one settled voucher (0.01), one owed (0.005), one live session with a relayed download
    const settled = await openChannel(devnet, 3, fx.payout, 10n ** 17n)
    await recordChannel(fx.seller.store, devnet, settled)
    await payVoucher(fx.seller.store, devnet, settled, 10n ** 16n)
    const result = await fx.seller.settler.settleNow()
    assert.equal(result.batches.length, 1)
    settledTx = result.batches[0].txHash
    const owed = await openChannel(devnet, 4, fx.payout, 10n ** 17n)
    await recordChannel(fx.seller.store, devnet, owed)
    await payVoucher(fx.seller.store, devnet, owed, 5n * 10n ** 15n)
    buyer = await connectBuyer(devnet, fx, 2)
    assert.equal(await buyer.download(2 * 1024 * 1024), 2 * 1024 * 1024)

    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30_000 })
    page = await browser.newPage({ viewport: { width: 1200, height: 900 } })
    page.setDefaultTimeout(15_000)
    page.on('request', (r) => { requests.push(r.url()) })
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`) })
    page.on('pageerror', (err) => { problems.push(`page error: ${err.message}`) })
  })

  after(async () => {
    await browser?.close()
    await buyer?.stop()
    await fx?.stop()
    await devnet?.stop()
    if (shots !== undefined && process.env.KEEP_SCREENSHOTS === undefined) await rm(shots, { recursive: true, force: true })
  })

  it('renders peer id, payout, sharing, earnings, the live session and the settled batch', async (t) => {
    await page.goto(fx.apiUrl)
    await page.waitForSelector('body[data-loaded="true"]')
    const status = await fx.seller.status()
    const peerCard = await page.locator('#peer').innerText()
    assert.ok(peerCard.includes(status.peerId), `peer card shows the peer id: ${peerCard}`)
    assert.ok((await page.locator('#payout').innerText()).includes(fx.payout))
    assert.equal(await page.locator('#sharing').innerText(), 'Sharing')

    const earnings = await page.locator('#earnings').innerText()
    assert.match(earnings, /native coin\s+0\.01\s+0\.005\d*\s/, earnings)
    const sessions = await page.locator('#sessions').innerText()
    assert.match(sessions, /2\.\d\d MiB/, `the live session shows its relayed bytes: ${sessions}`)
    assert.match(sessions, /active|waiting for payment/)
    const batches = await page.locator('#batches').innerText()
    assert.ok(batches.includes(settledTx.slice(0, 8)), `the settled batch is listed: ${batches}`)
    assert.match(batches, /settled/)
    assert.match(await page.locator('#cards').innerText(), /Earned\s+0\.01\s+native coin, settled on chain/i)

    const shot = join(shots, 'dashboard.png')
    await page.screenshot({ path: shot, fullPage: true })
    assert.ok((await stat(shot)).size > 10_000)
    t.diagnostic(`screenshot: ${shot}${process.env.KEEP_SCREENSHOTS === undefined ? ' (removed after the run; set KEEP_SCREENSHOTS=1 to keep it)' : ''}`)

    const origin = new URL(fx.apiUrl).origin
    assert.deepEqual(requests.filter((u) => !u.startsWith(origin)), [], 'the page loads nothing from elsewhere')
    assert.deepEqual(problems, [], 'no console error, CSP violation or script error')
  })

  it('keeps polling and shows the new state', async () => {
    await buyer!.download(1024 * 1024)
    await page.locator('#sessions', { hasText: /3\.\d\d MiB/ }).waitFor({ timeout: DASHBOARD_POLL_MS * 3 })
  })

  it('says the daemon is unreachable when it stops', async () => {
    await buyer?.stop()
    buyer = undefined
    await fx.stop()
    await page.waitForSelector('#error:not([hidden])', { timeout: DASHBOARD_POLL_MS * 3 })
    assert.match(await page.locator('#error').innerText(), /Cannot reach the spareband daemon.*spareband start/)
    assert.equal(await page.locator('#sharing').innerText(), 'Unreachable')
    await page.screenshot({ path: join(shots, 'dashboard-unreachable.png'), fullPage: true })
  })
})
