/**
 * The live progress of `spareband connect`: redrawn in place on a terminal
 * (only when it changed), plain lines otherwise, JSON lines with `--json`.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { BuyerClientEvents, BuyerProgress } from '../daemon/buyer/buyer-client.ts'
import type { SellerCandidate } from '../daemon/buyer/discovery.ts'
import { formatProgress, ProgressView, type ProgressMode, type ProgressSource } from '../daemon/cli/progress.ts'

const NATIVE = '0x0000000000000000000000000000000000000000'
const MiB = 1024 * 1024

/** A buyer whose figures the test sets. */
class FakeBuyer extends EventEmitter<BuyerClientEvents> {
  figures: BuyerProgress = { state: 'relaying', seller: '12D3KooWAbcdefghijklmnopqrstuvwxyz', sessionId: 'x', pricePerGiB: 10n ** 15n, token: NATIVE, bytes: 0n, spent: 0n, spendCap: 10n ** 17n, sellersTried: 1, failovers: 0 }
  progress (): BuyerProgress {
    return { ...this.figures }
  }
}

function view (mode: ProgressMode): { out: string[], clock: { ms: number }, buyer: FakeBuyer, view: ProgressView } {
  const out: string[] = []
  const clock = { ms: 0 }
  const buyer = new FakeBuyer()
  const v = new ProgressView({ mode, output: { write: (t) => out.push(t), columns: 80 }, intervalMs: 3_600_000, now: () => clock.ms })
  v.start(buyer as unknown as ProgressSource)
  return { out, clock, buyer, view: v }
}

describe('connect progress', () => {
  it('redraws one line in place on a terminal, only when it changed, and prints events above it', async () => {
    const { out, clock, buyer, view: v } = view('tty')
    assert.equal(out.length, 1)
    assert.match(out[0], /^\r\x1b\[2K/)
    v.update()
    assert.equal(out.length, 1, 'no redraw without a change')
    clock.ms = 1000
    buyer.figures.bytes = BigInt(4 * MiB)
    v.update()
    assert.equal(out.length, 2)
    assert.match(out[1], /4\.00 MiB relayed, 4\.00 MiB\/s/)
    assert.ok(!out[1].includes('\n'), 'the status stays on one line')
    assert.ok(out[1].length - '\r\x1b[2K'.length <= 80, 'cut to the terminal width')
    buyer.emit('failover', { from: 'peerA', reason: 'gone' })
    assert.match(out[2], /^\r\x1b\[2Kseller peerA failed \(gone\); switching to the next one\n$/)
    assert.match(out[3], /^\r\x1b\[2Kseller /, 'the status is drawn again below the event')
    v.stop()
    assert.equal(out.at(-1), '\n')
    buyer.emit('failover', { from: 'peerB', reason: 'gone' })
    assert.ok(!out.some((line) => line.includes('peerB')), 'nothing is printed after stop')
  })

  it('prints plain lines when not a terminal, only when the figures changed', () => {
    const { out, buyer, view: v } = view('lines')
    v.update()
    assert.equal(out.length, 1)
    assert.ok(out[0].endsWith('\n') && !out[0].includes('\x1b'))
    buyer.figures.bytes = 10n
    v.update()
    assert.equal(out.length, 2)
    v.stop()
  })

  it('prints JSON lines with --json: progress with the rate, and one object per event', async () => {
    const { out, clock, buyer, view: v } = view('json')
    clock.ms = 2000
    buyer.figures.bytes = BigInt(2 * MiB)
    buyer.figures.spent = 123n
    v.update()
    const candidate = { peerId: peerIdFromPrivateKey(await generateKeyPair('Ed25519')), pricePerGiB: 5n, latencyMs: 3, offer: {} } as unknown as SellerCandidate
    buyer.emit('seller', candidate)
    buyer.emit('spend-cap', { spent: 10n, cap: 10n })
    v.stop()
    const lines = out.map((l) => JSON.parse(l))
    assert.equal(lines[0].type, 'progress')
    assert.equal(lines[1].bytes, String(2 * MiB))
    assert.equal(lines[1].spent, '123')
    assert.equal(lines[1].bytesPerSec, MiB)
    assert.deepEqual(lines[2], { type: 'seller', seller: candidate.peerId.toString(), pricePerGiB: '5', latencyMs: 3 })
    assert.deepEqual(lines[3], { type: 'spend-cap', spent: '10', cap: '10' })
    assert.equal(lines.length, 4, 'no repeated progress line without a change')
  })

  it('says what the buyer is doing when no seller is in use', () => {
    const figures: BuyerProgress = { state: 'switching', seller: undefined, sessionId: undefined, pricePerGiB: undefined, token: NATIVE, bytes: 0n, spent: 0n, spendCap: 1n, sellersTried: 2, failovers: 1 }
    assert.match(formatProgress(figures, 0), /^switching to the next seller… \| 0 B relayed, 0 B\/s \| spent 0 of 0\.000000000000000001 native coin \| 1 failover$/)
  })
})
